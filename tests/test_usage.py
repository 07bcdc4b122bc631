from __future__ import annotations

from types import SimpleNamespace

from aivitals.usage import (
    TokenUsage,
    tool_uses_from_openai_output,
    tool_uses_from_openai_response,
    usage_from_anthropic,
    usage_from_openai,
    usage_from_response,
)


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


def anthropic_message(usage: dict[str, object]) -> object:
    from anthropic.types import Message

    return Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
    )


def test_anthropic_cache_writes_are_split_by_lifetime_from_a_real_message() -> None:
    # 1-hour writes cost 2x input, 5-minute ones 1.25x: the split was ignored.
    message = anthropic_message(
        {
            "input_tokens": 40,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 3000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 1000,
                "ephemeral_1h_input_tokens": 2000,
            },
            "output_tokens": 90,
            "service_tier": "standard",
        }
    )
    assert usage_from_response(message.usage, provider="anthropic") == TokenUsage(  # type: ignore[attr-defined]
        input_tokens=4040,
        output_tokens=90,
        cached_input_tokens=1000,
        cache_write_tokens=3000,
        cache_write_1h_tokens=2000,
    )


def test_anthropic_writes_without_the_split_are_all_5_minute_writes() -> None:
    message = anthropic_message(
        {"input_tokens": 10, "cache_creation_input_tokens": 500, "output_tokens": 5}
    )
    usage = usage_from_anthropic(message.usage)  # type: ignore[attr-defined]
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (500, 0)


def test_anthropic_split_alone_gives_the_total_and_an_overstated_1h_is_clamped() -> None:
    split_only = usage_from_anthropic(
        {
            "input_tokens": 1,
            "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 4},
        }
    )
    assert (split_only.cache_write_tokens, split_only.cache_write_1h_tokens) == (7, 4)
    overstated = usage_from_anthropic(
        {"cache_creation_input_tokens": 5, "cache_creation": {"ephemeral_1h_input_tokens": 9}}
    )
    assert (overstated.cache_write_tokens, overstated.cache_write_1h_tokens) == (5, 5)


def test_anthropic_server_tool_uses_and_thinking_from_a_real_message() -> None:
    message = anthropic_message(
        {
            "input_tokens": 100,
            "output_tokens": 300,
            "output_tokens_details": {"thinking_tokens": 120},
            "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 1},
        }
    )
    usage = usage_from_anthropic(message.usage)  # type: ignore[attr-defined]
    assert usage.server_tool_uses == {"web_search": 3, "web_fetch": 1}
    assert usage.reasoning_tokens == 120
    # Zero counts are left out, so a call without tools has no tool uses at all.
    none = usage_from_anthropic({"server_tool_use": {"web_search_requests": 0}})
    assert none.server_tool_uses == {}


def test_anthropic_stream_delta_usage_reads_the_same_way() -> None:
    from anthropic.types import MessageDeltaUsage

    delta = MessageDeltaUsage.model_validate(
        {
            "output_tokens": 42,
            "input_tokens": 7,
            "cache_read_input_tokens": 10,
            "cache_creation_input_tokens": 20,
            "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
        }
    )
    usage = usage_from_anthropic(delta)
    assert (usage.input_tokens, usage.output_tokens, usage.server_tool_uses) == (
        37,
        42,
        {"web_search": 2},
    )


def openai_response(output: list[dict[str, object]], **extra: object) -> object:
    from openai.types.responses import Response

    return Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 0,
            "model": "gpt-5",
            "output": output,
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 900,
                "output_tokens": 50,
                "total_tokens": 950,
                "input_tokens_details": {"cached_tokens": 512, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 20},
            },
            **extra,
        }
    )


SEARCH: dict[str, object] = {
    "type": "web_search_call",
    "id": "ws_1",
    "status": "completed",
    "action": {"type": "search", "query": "q"},
}
OPEN_PAGE: dict[str, object] = {
    "type": "web_search_call",
    "id": "ws_2",
    "status": "completed",
    "action": {"type": "open_page", "url": "https://example.com"},
}
FILE_SEARCH: dict[str, object] = {
    "type": "file_search_call",
    "id": "fs_1",
    "status": "completed",
    "queries": ["q"],
}
MESSAGE: dict[str, object] = {
    "type": "message",
    "id": "m_1",
    "role": "assistant",
    "status": "completed",
    "content": [{"type": "output_text", "text": "hi", "annotations": []}],
}


def test_responses_api_tool_calls_are_counted_from_real_output_items() -> None:
    response = openai_response([SEARCH, SEARCH, OPEN_PAGE, FILE_SEARCH, MESSAGE])
    assert tool_uses_from_openai_output(response.output) == {  # type: ignore[attr-defined]
        "web_search": 2,
        "file_search": 1,
    }
    assert tool_uses_from_openai_response(response) == {"web_search": 2, "file_search": 1}
    assert tool_uses_from_openai_output(None) == {}
    assert tool_uses_from_openai_output([{"type": ["odd"]}, 7]) == {}


def test_responses_api_billed_search_count_wins_over_the_items() -> None:
    response = openai_response(
        [SEARCH, FILE_SEARCH],
        tool_usage={
            "web_search": {"num_requests": 4},
            "image_gen": {
                "input_tokens": 0,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
                "output_tokens": 0,
                "total_tokens": 0,
            },
        },
    )
    assert tool_uses_from_openai_response(response) == {"file_search": 1, "web_search": 4}
