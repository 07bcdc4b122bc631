from __future__ import annotations

from types import SimpleNamespace

from aivitals.usage import TokenUsage, usage_from_anthropic, usage_from_openai, usage_from_response


def test_openai_chat_usage_object() -> None:
    usage = SimpleNamespace(
        prompt_tokens=2000,
        completion_tokens=300,
        prompt_tokens_details=SimpleNamespace(cached_tokens=1024),
        completion_tokens_details=SimpleNamespace(reasoning_tokens=200),
    )
    assert usage_from_openai(usage) == TokenUsage(
        input_tokens=2000, output_tokens=300, cached_input_tokens=1024, reasoning_tokens=200
    )


def test_openai_responses_api_usage() -> None:
    raw = {
        "input_tokens": 900,
        "output_tokens": 50,
        "input_tokens_details": {"cached_tokens": 512},
        "output_tokens_details": {"reasoning_tokens": 20},
    }
    assert usage_from_response(raw, provider="openai") == TokenUsage(
        input_tokens=900, output_tokens=50, cached_input_tokens=512, reasoning_tokens=20
    )


def test_anthropic_usage_adds_cache_to_input() -> None:
    raw = {
        "input_tokens": 7,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 30,
        "output_tokens": 9,
    }
    expected = TokenUsage(
        input_tokens=137, output_tokens=9, cached_input_tokens=100, cache_write_tokens=30
    )
    assert usage_from_anthropic(raw) == expected
    # Recognised without a provider hint, by its cache fields.
    assert usage_from_response(raw) == expected


def test_missing_and_null_fields_count_as_zero() -> None:
    assert usage_from_openai({"prompt_tokens": 5, "completion_tokens": None}) == TokenUsage(
        input_tokens=5
    )
    assert usage_from_anthropic(SimpleNamespace(input_tokens=3, output_tokens=4)) == TokenUsage(
        input_tokens=3, output_tokens=4
    )


def test_inconsistent_report_is_clamped() -> None:
    raw = {
        "prompt_tokens": 10,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 50},
    }
    assert usage_from_openai(raw).cached_input_tokens == 10


def test_openai_cache_writes_are_read_from_real_response_objects() -> None:
    # OpenAI reports prompt-cache writes beside cached reads; they were read as plain input.
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response

    chat = ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o",
            "choices": [],
            "usage": {
                "prompt_tokens": 2000,
                "completion_tokens": 10,
                "total_tokens": 2010,
                "prompt_tokens_details": {"cached_tokens": 500, "cache_write_tokens": 1000},
            },
        }
    )
    assert usage_from_response(chat.usage, provider="openai") == TokenUsage(
        input_tokens=2000, output_tokens=10, cached_input_tokens=500, cache_write_tokens=1000
    )
    responses = Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 0,
            "model": "gpt-4o",
            "output": [],
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 3000,
                "output_tokens": 20,
                "total_tokens": 3020,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 2500},
                "output_tokens_details": {"reasoning_tokens": 5},
            },
        }
    )
    assert usage_from_response(responses.usage, provider="openai") == TokenUsage(
        input_tokens=3000, output_tokens=20, cache_write_tokens=2500, reasoning_tokens=5
    )


def test_openai_cache_writes_never_exceed_what_is_left_of_the_input() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 1,
        "prompt_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 50},
    }
    got = usage_from_openai(usage)
    assert (got.cached_input_tokens, got.cache_write_tokens) == (80, 20)
