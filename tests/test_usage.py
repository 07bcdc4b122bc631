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
