"""The built-in evaluators on real `openai` and `anthropic` response objects.

Each object is what the official client returns (built with its own `model_validate`), read into
a `CallContent` by `aivitals.extract` as the SDK's wrappers and `track().set_response` do, and
scored: refusals (OpenAI's field, Anthropic's stop reason, the words), cut answers (``length``,
``max_tokens``), empty ones, JSON and tool calls, personal data, and the negatives beside each.
"""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from aivitals.content import CallContent
from aivitals.extract.any_response import content_of_response
from aivitals.extract.chat import chat_content
from aivitals.finish import finish_reason_from_anthropic
from aivitals.model import Call
from aivitals.quality.evaluators import EvaluatorConsumer

from .support.helpers import make_call


def completion(message: dict[str, Any], finish_reason: str = "stop") -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish_reason,
                    "message": {"role": "assistant", **message},
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn") -> Message:
    return Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }
    )


def scores_of(response: object, finish_reason: str | None, **call: Any) -> dict[str, float]:
    content = content_of_response(response, finish_reason)
    assert content is not None
    return scores(make_call(finish_reason=finish_reason, **call), content)


def scores(call: Call, content: CallContent) -> dict[str, float]:
    consumer = EvaluatorConsumer(lambda score: score)
    return {s.name: s.value for s in consumer.evaluate(call, content)}


def test_openai_refusal_field() -> None:
    response = completion({"content": None, "refusal": "I'm sorry, I can't assist with that."})
    assert scores_of(response, "stop") == {
        "empty": 1.0,  # no text, no tool call: a refusal is also an empty answer
        "truncated": 0.0,
        "refusal": 1.0,
        "pii_leak": 0.0,
    }


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("I'm sorry, but I can't help with that request.", 1.0),
        ("Es tut mir leid, aber ich kann Ihnen dabei nicht helfen.", 1.0),
        ("I can't believe how easy this is: use sorted().", 0.0),
        ("Sorry for the confusion! The capital of Australia is Canberra.", 0.0),
    ],
)
def test_openai_refusal_in_words_and_polite_answers(text: str, refused: float) -> None:
    assert scores_of(completion({"content": text}), "stop")["refusal"] == refused


def test_openai_cut_and_empty_answers() -> None:
    cut = scores_of(completion({"content": "The three causes are"}, "length"), "length")
    assert (cut["truncated"], cut["empty"]) == (1.0, 0.0)
    empty = scores_of(completion({"content": ""}), "stop")
    assert (empty["truncated"], empty["empty"]) == (0.0, 1.0)


def test_openai_json_schema_asked_valid_and_breaking_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    request = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Paris as JSON"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "city", "strict": True, "schema": schema},
        },
    }
    fits = completion({"content": '{"city": "Paris", "population": 2102650}'})
    breaks = completion({"content": '{"city": "Paris", "population": "2.1M"}'})  # parses
    not_json = completion({"content": "Paris has 2.1 million people."})
    for response, valid in ((fits, 1.0), (breaks, 0.0), (not_json, 0.0)):
        content = chat_content(request, response, finish_reason="stop")
        assert scores(make_call(), content)["json_valid"] == valid


def test_openai_tool_call_arguments_that_do_not_parse() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Os'},
    }
    response = completion({"content": None, "tool_calls": [call]}, "tool_calls")
    result = scores_of(response, "tool_calls")
    assert (result["json_valid"], result["empty"]) == (0.0, 0.0)


def test_openai_answer_leaking_a_card_and_one_failing_luhn() -> None:
    leak = completion({"content": "The card on file is 4111 1111 1111 1111."})
    lookalike = completion({"content": "Booking 4111 1111 1111 1112 is confirmed for 2024-03-15."})
    assert scores_of(leak, "stop")["pii_leak"] == 1.0
    assert scores_of(lookalike, "stop")["pii_leak"] == 0.0


def test_anthropic_refusal_stop_reason_and_max_tokens() -> None:
    refused = message([], "refusal")
    assert scores_of(refused, finish_reason_from_anthropic("refusal"))["refusal"] == 1.0
    cut = message([{"type": "text", "text": "Voici les trois étapes : d'abord"}], "max_tokens")
    result = scores_of(cut, finish_reason_from_anthropic("max_tokens"))
    assert (result["truncated"], result["refusal"]) == (1.0, 0.0)


def test_anthropic_french_refusal_in_words_and_a_polite_answer() -> None:
    refused = message([{"type": "text", "text": "Je ne peux pas vous aider avec cela."}])
    polite = message([{"type": "text", "text": "Désolé pour le retard ! Voici le résumé."}])
    assert scores_of(refused, "stop")["refusal"] == 1.0
    assert scores_of(polite, "stop")["refusal"] == 0.0


def test_anthropic_tool_use_input_is_json_and_an_email_in_it_leaks() -> None:
    tool = {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "send_mail",
        "input": {"to": "jane.doe@acme.io", "body": "hi"},
    }
    result = scores_of(message([tool], "tool_use"), finish_reason_from_anthropic("tool_use"))
    assert result["json_valid"] == 1.0
    assert result["pii_leak"] == 1.0
    assert result["empty"] == 0.0
