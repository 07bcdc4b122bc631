"""OTLP spans to calls: each convention, with hand-built protobuf spans as exporters send them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aivitals.model import Call
from aivitals.otlp import facts
from aivitals.otlp.mapping import AttributeMap, SpanBatch, call_id_for_span, calls_from_traces
from aivitals.recorder import Recorder
from aivitals.sinks.memory import MemorySink
from aivitals.span_attributes import call_attributes
from tests.support.otlp_spans import (
    CHAT,
    START,
    START_NS,
    TRACE_ID,
    AttrValue,
    event,
    export,
    span,
)


def one_call(attrs: Mapping[str, AttrValue], **kwargs: object) -> Call:
    batch = calls_from_traces(export(span(attrs, **kwargs)))  # type: ignore[arg-type]
    assert (batch.not_model, batch.rejected, batch.reasons) == (0, 0, [])
    assert len(batch.calls) == 1
    return batch.calls[0]


def usage(call: Call) -> tuple[int, int, int, int, int]:
    return (
        call.input_tokens,
        call.output_tokens,
        call.cached_input_tokens,
        call.cache_write_tokens,
        call.reasoning_tokens,
    )


# GenAI semantic conventions, current names


def test_current_semconv_chat_span_becomes_one_call_with_its_identity_and_times() -> None:
    parent = bytes.fromhex("b7ad6b7169203331")
    spanned = span(
        {
            **CHAT,
            "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 80,
            "gen_ai.response.finish_reasons": ["stop"],
            "http.response.status_code": 200,
        },
        span_id=bytes.fromhex("00f067aa0ba902b7"),
        parent_span_id=parent,
        duration_ms=812.5,
    )
    batch = calls_from_traces(export(spanned))
    assert batch == SpanBatch(calls=batch.calls, not_model=0, rejected=0, reasons=[])
    (call,) = batch.calls
    assert (call.provider, call.model, call.response_model, call.operation) == (
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "chat",
    )
    assert (call.trace_id, call.span_id, call.parent_span_id) == (
        "0af7651916cd43dd8448eb211c80319c",
        "00f067aa0ba902b7",
        "b7ad6b7169203331",
    )
    assert call.started_at == START
    assert call.latency_ms == 812.5
    assert usage(call) == (1200, 80, 0, 0, 0)
    assert (call.status, call.error_type, call.finish_reason, call.http_status) == (
        "ok",
        None,
        "stop",
        200,
    )
    assert call.cost_usd is None and call.price_source is None  # the recorder prices


def test_current_cache_tokens_are_inside_input_and_never_added_to_it() -> None:
    call = one_call(
        {
            **CHAT,
            "gen_ai.usage.input_tokens": 1300,
            "gen_ai.usage.cache_read.input_tokens": 1024,
            "gen_ai.usage.cache_creation.input_tokens": 200,
            "gen_ai.usage.output_tokens": 40,
            "gen_ai.usage.reasoning.output_tokens": 30,
        }
    )
    assert usage(call) == (1300, 40, 1024, 200, 30)


def test_time_to_first_chunk_in_seconds_becomes_ttft_ms() -> None:
    call = one_call({**CHAT, "gen_ai.response.time_to_first_chunk": 0.25}, duration_ms=900)
    assert call.ttft_ms == 250.0


def test_service_tier_from_the_openai_response() -> None:
    call = one_call({**CHAT, "openai.response.service_tier": "flex"})
    assert call.service_tier == "flex"


# Deprecated names


def test_deprecated_names_give_the_same_call_as_current_ones() -> None:
    deprecated = one_call(
        {
            "gen_ai.system": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.prompt_tokens": 500,
            "gen_ai.usage.completion_tokens": 60,
        }
    )
    assert (deprecated.provider, deprecated.model) == ("openai", "gpt-4o-mini")
    assert usage(deprecated) == (500, 60, 0, 0, 0)


def test_a_span_with_both_current_and_deprecated_names_is_counted_once() -> None:
    # Instrumentations in transition send both; adding them would double the tokens.
    call = one_call(
        {
            **CHAT,
            "gen_ai.system": "openai",
            "gen_ai.usage.input_tokens": 500,
            "gen_ai.usage.prompt_tokens": 500,
            "gen_ai.usage.output_tokens": 60,
            "gen_ai.usage.completion_tokens": 60,
            "gen_ai.usage.cache_read.input_tokens": 100,
            "gen_ai.usage.cache_read_input_tokens": 100,
            "gen_ai.usage.reasoning.output_tokens": 10,
            "gen_ai.usage.reasoning_tokens": 10,
            "llm.token_count.prompt": 500,
            "llm.token_count.completion": 60,
        }
    )
    assert usage(call) == (500, 60, 100, 0, 10)


def test_current_names_win_over_deprecated_ones_when_they_disagree() -> None:
    call = one_call(
        {
            **CHAT,
            "gen_ai.system": "azure.ai.openai",
            "gen_ai.usage.input_tokens": 700,
            "gen_ai.usage.prompt_tokens": 650,
        }
    )
    assert (call.provider, call.input_tokens) == ("openai", 700)


# OpenInference


def test_openinference_llm_span() -> None:
    call = one_call(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini-2024-07-18",
            "llm.provider": "openai",
            "llm.system": "openai",
            "llm.token_count.prompt": 1500,
            "llm.token_count.prompt_details.cache_read": 1024,
            "llm.token_count.prompt_details.cache_write": 300,
            "llm.token_count.completion": 90,
            "llm.token_count.completion_details.reasoning": 64,
            "llm.token_count.total": 1590,
        },
        name="ChatCompletion",
    )
    assert (call.provider, call.model, call.operation) == (
        "openai",
        "gpt-4o-mini-2024-07-18",
        "chat",
    )
    assert usage(call) == (1500, 90, 1024, 300, 64)


def test_openinference_embedding_span() -> None:
    call = one_call(
        {
            "openinference.span.kind": "EMBEDDING",
            "embedding.model_name": "text-embedding-3-small",
            "llm.model_name": "text-embedding-3-small",
            "llm.system": "openai",
            "llm.token_count.prompt": 8,
            "llm.token_count.total": 8,
        },
        name="CreateEmbeddingResponse",
    )
    assert (call.operation, call.model, call.input_tokens, call.output_tokens) == (
        "embeddings",
        "text-embedding-3-small",
        8,
        0,
    )


def test_openinference_first_token_event_gives_ttft() -> None:
    call = one_call(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.provider": "openai",
        },
        duration_ms=1000,
        events=[event("First Token Stream Event", 120.0)],
    )
    assert call.ttft_ms == 120.0


def test_openinference_embedding_model_name_and_finish_reason() -> None:
    embedding = one_call(
        {
            "openinference.span.kind": "EMBEDDING",
            "embedding.model_name": "text-embedding-3-small",
            "llm.system": "openai",
            "llm.token_count.prompt": 8,
        }
    )
    chat = one_call(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.system": "openai",
            "llm.finish_reason": "length",
        }
    )
    assert (embedding.model, chat.finish_reason) == ("text-embedding-3-small", "length")


def test_openinference_request_and_response_model_names() -> None:
    # openinference-instrumentation-anthropic 3.x names both.
    call = one_call(
        {
            "openinference.span.kind": "LLM",
            "llm.provider": "anthropic",
            "llm.request.model_name": "claude-sonnet-4-5",
            "llm.model_name": "claude-sonnet-4-5-20250929",
            "llm.response.model_name": "claude-sonnet-4-5-20250929",
        }
    )
    assert (call.model, call.response_model) == ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929")


def test_openinference_failed_call_names_its_model_and_user_only_in_the_parameters() -> None:
    call = one_call(
        {
            "openinference.span.kind": "LLM",
            "llm.system": "openai",
            "llm.invocation_parameters": '{"model": "gpt-4o-mini", "user": "u-9"}',
        },
        error="RateLimitError: Error code: 429 - slow down",
    )
    assert (call.model, call.user, call.error_type) == ("gpt-4o-mini", "u-9", "rate_limit")


def test_unparseable_invocation_parameters_leave_the_span_without_a_model() -> None:
    batch = calls_from_traces(
        export(span({"openinference.span.kind": "LLM", "llm.invocation_parameters": "{oops"}))
    )
    assert (batch.rejected, batch.calls) == (1, [])
    assert "no model" in batch.reasons[0]


@pytest.mark.parametrize("kind", ["CHAIN", "AGENT", "TOOL", "RETRIEVER", "RERANKER", "GUARDRAIL"])
def test_openinference_spans_of_other_kinds_are_no_model_call(kind: str) -> None:
    # A LangChain chain or an agent span may name the model and sum its children's tokens.
    batch = calls_from_traces(
        export(
            span(
                {
                    "openinference.span.kind": kind,
                    "llm.model_name": "gpt-4o-mini",
                    "llm.provider": "openai",
                    "llm.token_count.prompt": 100,
                }
            )
        )
    )
    assert (batch.calls, batch.not_model, batch.rejected) == ([], 1, 0)


# What OpenLLMetry (Traceloop) and OpenLIT really send


def test_traceloop_openai_span() -> None:
    call = one_call(
        {
            "gen_ai.system": "openai",
            "llm.request.type": "chat",
            "gen_ai.request.model": "o4-mini",
            "gen_ai.response.model": "o4-mini-2025-04-16",
            "gen_ai.usage.input_tokens": 2000,
            "gen_ai.usage.output_tokens": 500,
            "gen_ai.usage.cache_read_input_tokens": 1536,
            "gen_ai.usage.reasoning_tokens": 448,
            "llm.usage.total_tokens": 2500,
        },
        name="openai.chat",
    )
    assert (call.provider, call.model, call.operation) == ("openai", "o4-mini", "chat")
    assert usage(call) == (2000, 500, 1536, 0, 448)


def test_traceloop_anthropic_messages_span_is_a_chat_call() -> None:
    # OpenLLMetry's Anthropic spans say "completion" for the Messages API; the name says chat.
    call = one_call(
        {
            "gen_ai.system": "Anthropic",
            "llm.request.type": "completion",
            "gen_ai.request.model": "claude-sonnet-4-5",
            # OpenLLMetry adds Anthropic's cache fields into input_tokens: the total.
            "gen_ai.usage.input_tokens": 2250,
            "gen_ai.usage.cache_read_input_tokens": 2000,
            "gen_ai.usage.cache_creation_input_tokens": 200,
            "gen_ai.usage.output_tokens": 30,
            "llm.usage.total_tokens": 2280,
        },
        name="anthropic.chat",
    )
    assert (call.provider, call.operation) == ("anthropic", "chat")
    assert usage(call) == (2250, 30, 2000, 200, 0)


def test_traceloop_embedding_and_completion_request_types() -> None:
    embedding = one_call(
        {
            "gen_ai.system": "openai",
            "llm.request.type": "embedding",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.usage.input_tokens": 8,
            "llm.usage.total_tokens": 8,
        },
        name="openai.embeddings",
    )
    completion = one_call(
        {"gen_ai.system": "openai", "llm.request.type": "completion", "gen_ai.request.model": "m"},
        name="openai.completion",
    )
    assert (embedding.operation, embedding.input_tokens) == ("embeddings", 8)
    assert completion.operation == "text_completion"


def test_only_a_total_means_input_for_an_embedding() -> None:
    call = one_call(
        {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "text-embedding-3-small",
            "llm.usage.total_tokens": 12,
        }
    )
    assert (call.input_tokens, call.output_tokens) == (12, 0)


def test_openlit_time_to_first_token() -> None:
    call = one_call({**CHAT, "gen_ai.server.time_to_first_token": 0.4}, duration_ms=2000)
    assert call.ttft_ms == 400.0


def test_a_time_to_first_token_of_a_call_not_streamed_is_not_kept() -> None:
    # OpenLIT gives every call one; for a whole answer it is the whole call.
    call = one_call(
        {**CHAT, "gen_ai.server.time_to_first_token": 0.8, "gen_ai.request.stream": False}
    )
    assert call.ttft_ms is None


def test_traceloop_first_chunk_event_gives_ttft() -> None:
    call = one_call(
        {**CHAT, "gen_ai.is_streaming": True},
        duration_ms=1000,
        events=[
            event("gen_ai.content.completion.chunk", 150.0),
            event("gen_ai.content.completion.chunk", 300.0),
        ],
    )
    assert call.ttft_ms == 150.0


def test_a_ttft_a_hair_past_the_end_of_the_span_is_the_whole_call() -> None:
    call = one_call({**CHAT, "gen_ai.response.time_to_first_chunk": 0.8000004}, duration_ms=800)
    assert call.ttft_ms == call.latency_ms == 800.0


# Anthropic's own figures passed through (input without the cache)


def test_input_smaller_than_its_cached_part_is_anthropic_s_uncached_input() -> None:
    call = one_call(
        {
            **CHAT,
            "gen_ai.provider.name": "anthropic",
            "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 200,
            "gen_ai.usage.output_tokens": 30,
        }
    )
    assert usage(call) == (1250, 30, 1000, 200, 0)


def test_a_total_that_only_adds_up_without_the_cache_in_input_settles_it() -> None:
    # Strands Agents on Bedrock: input 4299 uncached, total = input + output + cache read + write.
    call = one_call(
        {
            **CHAT,
            "gen_ai.usage.input_tokens": 4299,
            "gen_ai.usage.output_tokens": 631,
            "gen_ai.usage.cache_read_input_tokens": 3557,
            "gen_ai.usage.cache_write_input_tokens": 177,
            "gen_ai.usage.total_tokens": 4299 + 631 + 3557 + 177,
        }
    )
    assert usage(call) == (4299 + 3557 + 177, 631, 3557, 177, 0)


def test_a_total_that_adds_up_with_the_cache_in_input_leaves_it_alone() -> None:
    call = one_call(
        {
            **CHAT,
            "gen_ai.usage.input_tokens": 4299,
            "gen_ai.usage.output_tokens": 631,
            "gen_ai.usage.cache_read.input_tokens": 3557,
            "gen_ai.usage.total_tokens": 4299 + 631,
        }
    )
    assert usage(call) == (4299, 631, 3557, 0, 0)


def test_output_that_a_total_shows_without_its_reasoning_gets_it_added() -> None:
    # Gemini counts thoughts outside the candidates; a sender passing that through.
    call = one_call(
        {
            **CHAT,
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.reasoning.output_tokens": 300,
            "gen_ai.usage.total_tokens": 420,
        }
    )
    assert usage(call) == (100, 320, 0, 0, 300)


# The sender's cost is never used


def test_the_senders_cost_attribute_is_ignored_and_the_recorder_prices_the_call() -> None:
    attrs: dict[str, AttrValue] = {
        **CHAT,
        "gen_ai.usage.input_tokens": 1_000_000,
        "gen_ai.usage.output_tokens": 1_000_000,
        "gen_ai.usage.cost": 9999.0,
        "llm.usage.cost": 9999.0,
    }
    call = one_call(attrs)
    assert call.cost_usd is None
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory])
    try:
        recorded = recorder.record(call)
    finally:
        recorder.close()
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1_000_000, output_tokens=1_000_000),
        model_ref="gpt-4o-mini",
        provider_id="openai",
    )
    assert recorded.cost_usd == expected.total_price
    assert recorded.cost_usd < Decimal(10)  # gpt-4o-mini: $0.15 + $0.60 a million


def test_price_hook_prices_the_draft_before_it_is_frozen() -> None:
    recorder = Recorder()
    try:
        batch = calls_from_traces(
            export(span({**CHAT, "gen_ai.usage.input_tokens": 1_000_000})),
            price=recorder.price_draft,
        )
    finally:
        recorder.close()
    (call,) = batch.calls
    assert call.price_source is not None
    assert call.cost_usd == Decimal("0.15")


# Outcome: span status and error.type


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("RateLimitError", "rate_limit"),
        ("<class 'openai.RateLimitError'>", "rate_limit"),
        ("openai.RateLimitError", "rate_limit"),
        ("APITimeoutError", "timeout"),
        ("<class 'openai.APITimeoutError'>", "timeout"),
        ("APIConnectionError", "provider_down"),
        ("AuthenticationError", "auth"),
        ("PermissionDeniedError", "auth"),
        ("NotFoundError", "bad_request"),
        ("InternalServerError", "provider_down"),
        ("OverloadedError", "provider_down"),
        ("TimeoutError", "timeout"),
        ("429", "rate_limit"),
        ("503", "provider_down"),
        ("rate_limit_exceeded", "rate_limit"),  # OpenLLMetry's error body type or code
        ("rate_limit", "rate_limit"),  # aivitals' own spans
        ("context_window_exceeded", "context_window_exceeded"),
        ("_OTHER", "other"),
        ("SomethingElse", "other"),
    ],
)
def test_error_type_forms(error_type: str, expected: str) -> None:
    call = one_call({**CHAT, "error.type": error_type}, error="it failed")
    assert (call.status, call.error_type) == ("error", expected)


def test_error_type_without_an_error_status_is_still_an_error() -> None:
    call = one_call({**CHAT, "error.type": "RateLimitError"})
    assert (call.status, call.error_type) == ("error", "rate_limit")


def test_an_error_status_without_error_type_is_an_error_with_its_message() -> None:
    call = one_call(CHAT, error="upstream exploded")
    assert (call.status, call.error_type, call.http_status) == ("error", "other", None)
    assert call.error_message == "upstream exploded"


def test_the_status_code_in_openai_s_error_message_is_the_http_status() -> None:
    # What every instrumentation puts in the status: str() of openai's APIStatusError.
    message = "RateLimitError: Error code: 429 - {'error': {'code': 'rate_limit_exceeded'}}"
    call = one_call(CHAT, error=message)
    assert (call.error_type, call.http_status) == ("rate_limit", 429)
    server = one_call(CHAT, error="Error code: 503 - overloaded")
    assert (server.error_type, server.http_status) == ("provider_down", 503)


def test_the_error_message_refines_a_bad_request_and_keeps_the_http_status() -> None:
    call = one_call(
        {**CHAT, "error.type": "BadRequestError", "http.response.status_code": 400},
        error="This model's maximum context length is 128000 tokens",
    )
    assert (call.error_type, call.http_status) == ("context_window_exceeded", 400)
    assert call.error_message == (
        "BadRequestError: This model's maximum context length is 128000 tokens"
    )


def test_a_class_name_does_not_invent_an_http_status() -> None:
    call = one_call({**CHAT, "error.type": "RateLimitError"}, error="slow down")
    assert call.http_status is None


def test_the_exception_event_gives_type_and_message_when_the_status_has_none() -> None:
    call = one_call(
        CHAT,
        error="",
        events=[
            event(
                "exception",
                500.0,
                {"exception.type": "openai.APITimeoutError", "exception.message": "timed out"},
            )
        ],
    )
    assert (call.error_type, call.error_message) == ("timeout", "APITimeoutError: timed out")


def test_the_exception_event_names_the_type_when_the_status_has_only_a_message() -> None:
    # OpenInference: no error.type; the status says the message, the event the class.
    call = one_call(
        {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.system": "openai"},
        error="APITimeoutError: Request timed out.",
        events=[event("exception", 10.0, {"exception.type": "openai.APITimeoutError"})],
    )
    assert (call.status, call.error_type) == ("error", "timeout")


def test_secrets_in_an_error_message_are_redacted() -> None:
    call = one_call(CHAT, error="Incorrect API key provided: sk-proj-abcdefghijklmnop")
    assert call.error_message is not None
    assert "abcdefghijklmnop" not in call.error_message


# Attribution


def test_attribution_from_span_and_resource_attributes() -> None:
    request = export(
        span(
            {
                **CHAT,
                "user.id": "u-42",
                "session.id": "s-7",
                "gen_ai.conversation.id": "conv-1",
                "aivitals.feature": "search",
                "app.team": "growth",
                "llm.prompt_template.version": "v3",
            }
        ),
        resource={"service.name": "checkout", "deployment.environment.name": "prod"},
    )
    (call,) = calls_from_traces(request).calls
    assert (call.user, call.feature, call.team, call.prompt_version, call.environment) == (
        "u-42",
        "search",
        "growth",
        "v3",
        "prod",
    )
    assert call.tags == {
        "session.id": "s-7",
        "gen_ai.conversation.id": "conv-1",
        "service.name": "checkout",
    }


@pytest.mark.parametrize("key", ["user.id", "enduser.id", "gen_ai.user", "gen_ai.request.user"])
def test_each_user_attribute(key: str) -> None:
    assert one_call({**CHAT, key: "u-1"}).user == "u-1"


def test_deprecated_deployment_environment_on_the_resource() -> None:
    request = export(span(CHAT), resource={"deployment.environment": "staging"})
    assert calls_from_traces(request).calls[0].environment == "staging"


def test_a_span_attribute_wins_over_the_resource_s() -> None:
    request = export(
        span({**CHAT, "deployment.environment.name": "canary"}, span_id=b"\x00" * 7 + b"\x01"),
        span(CHAT, span_id=b"\x00" * 7 + b"\x02"),
        resource={"deployment.environment.name": "prod", "aivitals.feature": "chat"},
    )
    first, second = calls_from_traces(request).calls
    assert (first.environment, first.feature) == ("canary", "chat")
    assert (second.environment, second.feature) == ("prod", "chat")


def test_attribute_map_from_pairs_reads_the_configured_names() -> None:
    attributes = AttributeMap.from_pairs(
        ["feature=app.workflow", "team=org.team", "prompt_version=app.prompt", "tag.tenant=t.id"]
    )
    request = export(
        span(
            {
                **CHAT,
                "app.workflow": "summarise",
                "aivitals.feature": "ignored now",
                "org.team": "core",
                "app.prompt": "p9",
                "t.id": "acme",
            }
        )
    )
    (call,) = calls_from_traces(request, attributes=attributes).calls
    assert (call.feature, call.team, call.prompt_version) == ("summarise", "core", "p9")
    assert call.tags["tenant"] == "acme"


@pytest.mark.parametrize(
    ("pair", "named"),
    [("feature", "FIELD=ATTRIBUTE"), ("colour=app.colour", "unknown field"), ("tag.=x", "tag")],
)
def test_attribute_map_refuses_a_bad_pair_naming_it(pair: str, named: str) -> None:
    with pytest.raises(ValueError, match=named) as caught:
        AttributeMap.from_pairs([pair])
    assert repr(pair) in str(caught.value)


def test_an_empty_user_attribute_is_no_user() -> None:
    # OpenLIT sends gen_ai.request.user "" when the request named none.
    assert one_call({**CHAT, "user.id": "", "gen_ai.request.user": "u-2"}).user == "u-2"
    assert one_call({**CHAT, "gen_ai.request.user": ""}).user is None


def test_long_attribution_values_are_cut_to_their_columns() -> None:
    call = one_call({**CHAT, "user.id": "u" * 500, "deployment.environment.name": "e" * 100})
    assert (len(call.user or ""), len(call.environment or "")) == (200, 64)


# Ids: idempotent, time-ordered


def test_the_same_span_sent_twice_gets_the_same_call_id() -> None:
    spanned = span(CHAT, span_id=bytes.fromhex("00f067aa0ba902b7"))
    first = calls_from_traces(export(spanned)).calls[0]
    again = calls_from_traces(export(spanned)).calls[0]
    other = calls_from_traces(export(span(CHAT, span_id=bytes.fromhex("00f067aa0ba902b8"))))
    assert first.id == again.id == call_id_for_span(TRACE_ID, spanned.span_id, START_NS)
    assert other.calls[0].id != first.id


def test_call_id_for_span_is_a_uuid7_whose_time_is_the_span_start() -> None:
    made = uuid.UUID(call_id_for_span(TRACE_ID, b"\x01" * 8, START_NS + 5_000_000))
    assert (made.version, made.variant) == (7, uuid.RFC_4122)
    assert made.int >> 80 == 1_764_590_400_005  # Unix ms of the start
    later = call_id_for_span(TRACE_ID, b"\x00" * 7 + b"\x01", START_NS + 2_000_000)
    assert later > call_id_for_span(TRACE_ID, b"\xff" * 8, START_NS + 1_000_000)


def test_aivitals_own_spans_keep_their_call_id() -> None:
    own = "019ad9c8-b200-7000-8000-000000000001"
    assert one_call({**CHAT, "aivitals.call.id": own}).id == own
    assert one_call({**CHAT, "aivitals.call_id": own}).id == own


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"status": "cancelled"},
        {"status": "error", "error_type": "rate_limit"},
        {"operation": "other"},
        {"cache": "hit", "tokens_estimated": True},
    ],
)
def test_aivitals_own_span_attributes_come_back_as_the_same_call(changes: dict[str, Any]) -> None:
    # What the SDK and the gateway write on their spans (aivitals.span_attributes), read back.
    fields: dict[str, Any] = {
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "response_model": "claude-sonnet-4-5-20250929",
        "latency_ms": 800.0,
        "started_at": START,
        "input_tokens": 3000,
        "output_tokens": 300,
        "cached_input_tokens": 1000,
        "cache_write_tokens": 1500,
        "reasoning_tokens": 200,
        "ttft_ms": 250.0,
        "finish_reason": "stop",
        "service_tier": "priority",
        "user": "u-1",
        "feature": "search",
        "team": "growth",
        "prompt_version": "v2",
        "environment": "prod",
        "id": "019ad9c8-b200-7000-8000-000000000002",
    }
    original = Call(**{**fields, **changes})
    attrs: dict[str, Any] = call_attributes(original)
    (back,) = calls_from_traces(export(span(attrs, duration_ms=800.0))).calls
    for name in {**fields, **changes}:
        assert getattr(back, name) == getattr(original, name), name


def test_an_invalid_own_call_id_falls_back_to_the_span_identity() -> None:
    spanned = span({**CHAT, "aivitals.call.id": "'; drop table calls"})
    (call,) = calls_from_traces(export(spanned)).calls
    assert call.id == call_id_for_span(TRACE_ID, spanned.span_id, START_NS)


# Spans that are no model call


def test_spans_that_are_no_model_call_are_counted_not_recorded() -> None:
    request = export(
        span({"http.request.method": "POST", "url.full": "https://api.openai.com/v1/chat"}),
        span({"db.system.name": "postgresql", "db.query.text": "select 1"}),
        span({}, name="handle_request"),
        # An agent span sums its model calls' tokens: recording it would count them twice.
        span(
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 5000,
            }
        ),
        span({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}),
        span({"traceloop.span.kind": "workflow", "traceloop.entity.name": "pipeline"}),
        # Pydantic AI's agent run: its children's tokens added up, and no operation named.
        span(
            {
                "gen_ai.agent.name": "agent",
                "agent_name": "agent",
                "model_name": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 51,
                "gen_ai.usage.output_tokens": 1,
            },
            name="agent run",
        ),
        # The same with a provider and a model, which alone would read as a call.
        span(
            {
                "gen_ai.agent.name": "agent",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 51,
            },
            name="agent run",
        ),
        # Vercel's AI SDK: the outer span has only ai.* attributes ...
        span({"ai.model.id": "gpt-4o-mini", "ai.usage.promptTokens": 10}, name="ai.generateText"),
        # ... the inner doGenerate span is the model call.
        span(
            {
                "gen_ai.system": "openai.chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 10,
            },
            name="ai.generateText.doGenerate",
        ),
    )
    batch = calls_from_traces(request)
    assert (batch.not_model, batch.rejected) == (9, 0)
    assert [(c.provider, c.input_tokens, c.operation) for c in batch.calls] == [
        ("openai", 10, "chat")
    ]


# Model-call spans that cannot be a valid Call


@pytest.mark.parametrize(
    ("attrs", "changes", "reason"),
    [
        ({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}, {}, "no model"),
        ({**CHAT, "gen_ai.usage.input_tokens": -5}, {}, "gen_ai.usage.input_tokens"),
        ({**CHAT, "llm.token_count.completion": "many"}, {}, "llm.token_count.completion"),
        ({**CHAT, "gen_ai.usage.output_tokens": 2.5}, {}, "gen_ai.usage.output_tokens"),
        ({**CHAT, "gen_ai.request.model": "x" * 300}, {}, "model"),
        ({**CHAT, "gen_ai.request.model": "bad\x00model"}, {}, "model"),
    ],
)
def test_invalid_model_call_spans_are_rejected_with_a_reason(
    attrs: dict[str, AttrValue], changes: dict[str, AttrValue], reason: str
) -> None:
    batch = calls_from_traces(export(span({**attrs, **changes}), span(CHAT)))
    assert (len(batch.calls), batch.not_model, batch.rejected) == (1, 0, 1)
    assert len(batch.reasons) == 1 and reason in batch.reasons[0]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"trace_id": bytes(16)}, "trace_id"),
        ({"trace_id": b"\x01" * 8}, "trace_id"),
        ({"span_id": bytes(8)}, "span_id"),
        ({"start_ns": 0, "duration_ms": 0}, "start_time_unix_nano"),
        ({"start_ns": START_NS, "duration_ms": -1}, "end_time_unix_nano"),
        ({"start_ns": 946_684_800_000_000_000 - 10**12}, "started_at"),  # before 2000
        ({"duration_ms": 2 * 86_400_000}, "latency_ms"),  # over a day
    ],
)
def test_spans_with_bad_identity_or_times_are_rejected(
    changes: dict[str, object], reason: str
) -> None:
    batch = calls_from_traces(export(span(CHAT, **changes)))  # type: ignore[arg-type]
    assert (batch.calls, batch.rejected) == ([], 1)
    assert batch.reasons[0].startswith(reason)


def test_reasons_are_distinct_and_bounded() -> None:
    same = [span({**CHAT, "gen_ai.usage.input_tokens": -1}) for _ in range(50)]
    batch = calls_from_traces(export(*same))
    assert (batch.rejected, len(batch.reasons)) == (50, 1)
    different = [span({**CHAT, "gen_ai.usage.input_tokens": -n}) for n in range(1, 50)]
    batch = calls_from_traces(export(*different))
    assert (batch.rejected, len(batch.reasons)) == (49, 5)


def test_a_batch_over_several_resources_and_scopes_counts_every_span() -> None:
    request = export(span(CHAT), span({"http.request.method": "GET"}))
    second = request.resource_spans.add()
    second.scope_spans.add().spans.extend(
        [span({**CHAT, "gen_ai.usage.input_tokens": -1}), span(CHAT)]
    )
    second.scope_spans.add().spans.extend([span(CHAT)])
    batch = calls_from_traces(request)
    assert (len(batch.calls), batch.not_model, batch.rejected) == (3, 1, 1)


def test_provider_names_become_the_catalog_s_and_a_missing_one_is_unknown() -> None:
    vertex = one_call({**CHAT, "gen_ai.provider.name": "gcp.vertex_ai"})
    bedrock = one_call({**CHAT, "gen_ai.provider.name": "aws.bedrock"})
    nameless = one_call({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"})
    assert (vertex.provider, bedrock.provider, nameless.provider) == ("google", "aws", "unknown")


def test_started_at_keeps_microseconds() -> None:
    call = one_call(CHAT, start_ns=START_NS + 123_456_789)
    assert call.started_at == START + timedelta(microseconds=123_456)


# Whatever the attributes hold, a span is a call, no model call, or rejected: never an exception

_KNOWN_NAMES = sorted(
    {name for names in facts._CALL_FACTS for name in names}
    | set(AttributeMap().user + AttributeMap().environment)
    | {"session.id", "service.name"}
)
_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    _INT64,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["chat", "LLM", "embeddings", "cancelled", "hit", "gpt-4o-mini", "429"]),
    st.lists(st.one_of(st.text(max_size=5), _INT64), max_size=3),
)


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(st.sampled_from(_KNOWN_NAMES), _VALUES, max_size=12),
    st.booleans(),
    st.booleans(),
    st.dictionaries(st.sampled_from(_KNOWN_NAMES), _VALUES, max_size=4),
)
def test_any_attribute_values_give_a_call_a_count_or_a_reason(
    attrs: dict[str, Any], over_a_chat: bool, failed: bool, resource: dict[str, Any]
) -> None:
    # Over a valid chat span, most examples reach every field's reading, not just the first.
    present = {key: value for key, value in attrs.items() if value is not None}
    if over_a_chat:
        present = {**CHAT, **present}
    on_resource = {key: value for key, value in resource.items() if value is not None}
    request = export(span(present, error="boom" if failed else None), resource=on_resource)
    batch = calls_from_traces(request)
    assert len(batch.calls) + batch.not_model + batch.rejected == 1
    assert len(batch.reasons) == batch.rejected
