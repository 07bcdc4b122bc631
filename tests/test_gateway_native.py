"""The gateway's native routes, ``/v1/messages`` (Anthropic) and ``/v1/responses`` (OpenAI), with
the real `anthropic` and `openai` clients in front and `aivitals mock-llm` behind (issue 16).

Every expected cost is genai-prices' own figure (`genai_prices.calc_price`) for the usage the
mock was told to report, never aivitals' pricing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import genai_prices
import httpx
import httpx2
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from aivitals.attribution import Attribution
from aivitals.gateway.budgets import Budget, BudgetLedger
from aivitals.gateway.cache import ResponseCache
from aivitals.gateway.keys import GatewayKey, KeyRing
from aivitals.gateway.proxy import Gateway
from aivitals.gateway.tracing import tracer_for
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.model import Call
from aivitals.query import Queries
from aivitals.query.window import Window
from aivitals.recorder import Recorder
from aivitals.sdk.runtime import Runtime
from aivitals.server import create_app
from aivitals.sinks.store import StoreSink
from aivitals.store.sql import SqlStore

from .support.servers import serve_in_thread

pytestmark = pytest.mark.slow

CLAUDE = "claude-sonnet-4-6"
GPT = "gpt-5-mini"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
GATEWAY_KEY = "sk-gw-native-0123456789abcdef"
TIGHT_KEY = "sk-gw-tight-0123456789abcdef"  # team "tight": a small budget
ANTHROPIC_KEY = "sk-ant-upstream-0123456789"
OPENAI_KEY = "sk-openai-upstream-0123456789"
ANTHROPIC_ENV = "AIVITALS_TEST_ANTHROPIC_KEY"
OPENAI_ENV = "AIVITALS_TEST_OPENAI_KEY"
MESSAGES: list[Any] = [{"role": "user", "content": "hello there"}]
PLAIN = {"X-Mock-Prompt-Tokens": "2000", "X-Mock-Completion-Tokens": "120"}
CACHED = {
    "X-Mock-Prompt-Tokens": "6000",
    "X-Mock-Cached-Tokens": "2048",
    "X-Mock-Cache-Write-Tokens": "3000",
    "X-Mock-Cache-Write-1h-Tokens": "1000",
    "X-Mock-Completion-Tokens": "200",
}


def catalog(model: str, provider: str, tier: str | None = None, **usage: int) -> Decimal:
    """genai-prices' price of ``usage`` (its own field names), at ``tier``."""
    price = genai_prices.calc_price(
        genai_prices.Usage(**usage),
        model_ref=model,
        provider_id=provider,
        genai_request_timestamp=NOW,
        price_context={"service_tier": tier} if tier else None,
    )
    return Decimal(price.total_price)


@dataclass
class Rig:
    origin: str
    claude_upstream: MockServer
    openai_upstream: MockServer
    store: SqlStore
    recorder: Recorder
    spans: InMemorySpanExporter
    closers: list[Any] = field(default_factory=list)

    def claude(self, key: str = GATEWAY_KEY) -> anthropic.Anthropic:
        made = anthropic.Anthropic(base_url=self.origin, api_key=key, max_retries=0)
        self.closers.append(made)
        return made

    def openai(self, key: str = GATEWAY_KEY) -> openai.OpenAI:
        made = openai.OpenAI(base_url=f"{self.origin}/v1", api_key=key, max_retries=0)
        self.closers.append(made)
        return made

    def stored(self, expected: int) -> list[Call]:
        """The stored calls, oldest first, waiting (bounded) for ``expected`` of them."""
        deadline = time.monotonic() + 10
        window = Window(NOW - timedelta(days=1), NOW + timedelta(days=1))
        while True:
            assert self.recorder.flush(timeout_s=10)
            calls = [c.call for c in Queries(self.store.engine).calls(window, limit=100)]
            if len(calls) >= expected or time.monotonic() > deadline:
                return sorted(calls, key=lambda call: call.id)
            time.sleep(0.02)

    def sent(self, upstream: MockServer) -> dict[str, str]:
        """The headers of the last request ``upstream`` received."""
        return dict(upstream.requests()[-1]["headers"])


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[MockServer, MockServer]]:
    fast = MockConfig(latency_median_ms=5.0, ttft_median_ms=1.0, latency_sigma=0.0)
    with (
        MockServer(dataclasses.replace(fast, api_key=ANTHROPIC_KEY)) as claude,
        MockServer(dataclasses.replace(fast, api_key=OPENAI_KEY)) as gpt,
    ):
        yield claude, gpt


@pytest.fixture
def rig(
    upstreams: tuple[MockServer, MockServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    claude_upstream, openai_upstream = upstreams
    claude_upstream.reset()
    openai_upstream.reset()
    monkeypatch.setenv(ANTHROPIC_ENV, ANTHROPIC_KEY)
    monkeypatch.setenv(OPENAI_ENV, OPENAI_KEY)
    store = SqlStore.open(tmp_path / "calls.db")
    ledger = BudgetLedger(
        [Budget(scope="team", value="tight", period="day", usd=Decimal("0.02"))],
        timezone="UTC",
        clock=lambda: NOW,
    )
    recorder = Recorder(
        inline_sinks=[ledger], batch_sinks=[StoreSink(store)], flush_interval_s=0.05
    )
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    gateway = Gateway(
        recorder=recorder,
        upstreams=Upstreams(
            [
                # Listed first and serving any model: /v1/messages must still prefer Anthropic.
                Upstream(name="openai", base_url=openai_upstream.base_url, api_key_env=OPENAI_ENV),
                Upstream(
                    name="anthropic",
                    base_url=claude_upstream.base_url,
                    api_key_env=ANTHROPIC_ENV,
                    models=(CLAUDE,),
                    api="anthropic",
                    provider="anthropic",
                ),
            ]
        ),
        keys=KeyRing(
            [
                GatewayKey(name="native", secret=GATEWAY_KEY, team="search"),
                GatewayKey(name="tight", secret=TIGHT_KEY, team="tight", requests_per_minute=3),
            ]
        ),
        budgets=ledger,
        cache=ResponseCache(ttl_s=600, max_bytes=1_000_000),
        tracer=tracer_for(provider),
        now=lambda: NOW,
    )
    runtime = Runtime(recorder=recorder, prometheus=None, windows=None, defaults=Attribution())
    app = create_app(runtime=runtime, store=store, registry=CollectorRegistry(), gateway=gateway)
    with serve_in_thread(app) as origin:
        made = Rig(origin, claude_upstream, openai_upstream, store, recorder, spans)
        yield made
        for client in made.closers:
            client.close()
    recorder.close()
    store.close()


def create(client: anthropic.Anthropic, headers: dict[str, str], **options: Any) -> Any:
    return client.messages.create(
        model=CLAUDE,
        max_tokens=options.pop("max_tokens", 1000),
        messages=MESSAGES,
        extra_headers=headers,
        **options,
    )


def test_messages_are_recorded_and_priced_from_the_catalog(rig: Rig) -> None:
    reply = create(rig.claude(), {**PLAIN, "anthropic-beta": "token-efficient-tools-2025-02-19"})
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (2000, 120)
    (call,) = rig.stored(1)
    assert (call.provider, call.model, call.operation) == ("anthropic", CLAUDE, "chat")
    assert (call.input_tokens, call.output_tokens, call.cached_input_tokens) == (2000, 120, 0)
    assert call.cost_usd == catalog(CLAUDE, "anthropic", input_tokens=2000, output_tokens=120)
    assert (call.finish_reason, call.endpoint, call.http_status) == ("stop", "/v1/messages", 200)
    assert call.response_model == CLAUDE and call.team == "search"
    # The upstream's own key, Anthropic's way; the client's gateway key never goes upstream.
    sent = rig.sent(rig.claude_upstream)
    assert sent["x-api-key"] == ANTHROPIC_KEY
    assert "authorization" not in sent
    assert sent["anthropic-beta"] == "token-efficient-tools-2025-02-19"
    assert sent["anthropic-version"]  # as the client sent it
    assert rig.openai_upstream.stats()["total"] == 0


def test_cache_reads_and_writes_are_priced_by_lifetime(rig: Rig) -> None:
    reply = create(rig.claude(), CACHED)
    assert reply.usage.input_tokens == 6000 - 2048 - 3000  # Anthropic's count: uncached only
    (call,) = rig.stored(1)
    assert (call.input_tokens, call.cached_input_tokens) == (6000, 2048)
    assert (call.cache_write_tokens, call.cache_write_1h_tokens) == (3000, 1000)
    want = catalog(
        CLAUDE,
        "anthropic",
        input_tokens=6000,
        cache_read_tokens=2048,
        cache_write_tokens=3000,
        cache_write_1h_tokens=1000,
        output_tokens=200,
    )
    as_5_minutes = catalog(
        CLAUDE,
        "anthropic",
        input_tokens=6000,
        cache_read_tokens=2048,
        cache_write_tokens=3000,
        output_tokens=200,
    )
    assert call.cost_usd == want and want > as_5_minutes


def test_service_tier_and_web_search_fees_are_recorded_and_priced(rig: Rig) -> None:
    headers = {**PLAIN, "X-Mock-Service-Tier": "priority", "X-Mock-Web-Search-Requests": "3"}
    create(rig.claude(), headers)
    (call,) = rig.stored(1)
    assert call.service_tier == "priority"
    assert call.server_tool_uses == {"web_search": 3}
    want = catalog(
        CLAUDE, "anthropic", "priority", input_tokens=2000, output_tokens=120, web_searches=3
    )
    assert call.cost_usd == want
    assert want > catalog(CLAUDE, "anthropic", input_tokens=2000, output_tokens=120)


def test_a_messages_stream_passes_through_and_costs_what_the_whole_answer_does(rig: Rig) -> None:
    client = rig.claude()
    headers = {**CACHED, "X-Mock-Web-Search-Requests": "2"}
    whole = create(client, headers)
    kinds: list[str] = []
    with client.messages.stream(
        model=CLAUDE, max_tokens=1000, messages=MESSAGES, extra_headers=headers
    ) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    assert final.usage == whole.usage  # the events reached the client as the upstream sent them
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("text") > 1  # many deltas, not one blob
    plain, streamed = rig.stored(2)
    for name in (
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "server_tool_uses",
        "cost_usd",
        "finish_reason",
        "tokens_estimated",
    ):
        assert getattr(streamed, name) == getattr(plain, name), name
    assert streamed.ttft_ms is not None and plain.ttft_ms is None
    assert streamed.cost_usd == catalog(
        CLAUDE,
        "anthropic",
        input_tokens=6000,
        cache_read_tokens=2048,
        cache_write_tokens=3000,
        cache_write_1h_tokens=1000,
        output_tokens=200,
        web_searches=2,
    )


def test_an_upstream_error_reaches_the_client_in_anthropics_shape_and_is_recorded(
    rig: Rig,
) -> None:
    with pytest.raises(anthropic.OverloadedError) as raised:
        create(rig.claude(), {"X-Mock-Error": "unavailable"})
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    (call,) = rig.stored(1)
    assert (call.status, call.error_type, call.http_status) == ("error", "provider_down", 529)


def test_the_gateways_own_refusals_speak_anthropics_shape(rig: Rig) -> None:
    url = f"{rig.origin}/v1/messages"
    body = {"model": CLAUDE, "messages": MESSAGES}
    no_max = httpx.post(url, json=body, headers={"authorization": f"Bearer {GATEWAY_KEY}"})
    assert no_max.status_code == 400
    assert no_max.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "max_tokens: a whole number >= 1 is required",
        },
    }
    # Anthropic's older clients send the key in x-api-key: it is a gateway key all the same.
    keyed = httpx.post(url, json={**body, "max_tokens": 5}, headers={"x-api-key": GATEWAY_KEY})
    assert keyed.status_code == 400  # authenticated; the mock wants an anthropic-version
    assert keyed.json()["error"]["message"] == "anthropic-version: header is required"
    with pytest.raises(anthropic.AuthenticationError) as refused:
        create(rig.claude(key="sk-gw-not-a-key-0000000000"), PLAIN)
    assert refused.value.body == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "missing or unknown gateway key: send Authorization: Bearer <your "
            "gateway key>",
        },
    }
    assert rig.claude_upstream.stats()["endpoints"] == {"/v1/messages": 1}


def test_a_budget_refuses_a_messages_call_by_its_max_tokens(rig: Rig) -> None:
    client = rig.claude(key=TIGHT_KEY)
    # 2,000 in and 120 out on claude-sonnet-4-6 cost $0.0078; the next call may answer 1,000
    # tokens ($0.015 at $15 a million): it does not fit in what is left of $0.02.
    create(client, PLAIN)
    with pytest.raises(anthropic.RateLimitError) as refused:
        create(client, PLAIN)
    body = refused.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "rate_limit_error"
    assert body["error"]["message"].startswith("budget exceeded: team 'tight' has spent $0.0078")
    assert "(1,000 output tokens at most)" in body["error"]["message"]
    assert int(refused.value.response.headers["retry-after"]) == 12 * 3600
    assert rig.claude_upstream.stats()["total"] == 1
    (call,) = rig.stored(1)
    assert call.cost_usd == catalog(CLAUDE, "anthropic", input_tokens=2000, output_tokens=120)
    # A smaller max_tokens reserves less, and fits.
    create(client, PLAIN, max_tokens=200)
    assert rig.claude_upstream.stats()["total"] == 2


def test_a_rate_limit_refuses_the_native_routes_too(rig: Rig) -> None:
    claude, gpt = rig.claude(key=TIGHT_KEY), rig.openai(key=TIGHT_KEY)
    create(claude, PLAIN, max_tokens=10)
    gpt.responses.create(model=GPT, input="hi", max_output_tokens=16, extra_headers=PLAIN)
    gpt.responses.create(model=GPT, input="hi", max_output_tokens=16, extra_headers=PLAIN)
    with pytest.raises(anthropic.RateLimitError) as refused:
        create(claude, PLAIN, max_tokens=10)
    body = refused.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert body["error"]["message"].startswith("rate limit: key 'tight'")
    assert rig.claude_upstream.stats()["total"] == 1


def test_a_cached_messages_answer_is_replayed_and_kept_apart_from_chat(rig: Rig) -> None:
    client = rig.claude()
    on = {**PLAIN, "X-Aivitals-Cache": "on"}
    first = create(client, on)
    again = create(client, on)
    assert again.content == first.content and again.usage == first.usage
    assert rig.claude_upstream.stats()["total"] == 1
    miss, hit = rig.stored(2)
    assert (miss.cache, hit.cache, hit.cost_usd, hit.saved_usd) == (
        "miss",
        "hit",
        Decimal(0),
        miss.cost_usd,
    )
    # The same body sent to chat completions is another request, not this one's answer.
    chat = httpx.post(
        f"{rig.origin}/v1/chat/completions",
        json={"model": CLAUDE, "max_tokens": 1000, "messages": MESSAGES},
        headers={"authorization": f"Bearer {GATEWAY_KEY}", **on},
    )
    assert chat.json()["object"] == "chat.completion"


def test_a_messages_request_makes_the_gateways_stage_spans(rig: Rig) -> None:
    create(rig.claude(), PLAIN)
    rig.stored(1)
    names = {span.name for span in rig.spans.get_finished_spans()}
    assert {"auth", "upstream", "response", f"chat {CLAUDE}"} <= names
    root = next(s for s in rig.spans.get_finished_spans() if s.name == f"chat {CLAUDE}")
    assert root.attributes is not None
    assert root.attributes["gen_ai.usage.input_tokens"] == 2000


def test_responses_are_recorded_with_cache_reasoning_tier_and_search_fees(rig: Rig) -> None:
    headers = {
        "X-Mock-Prompt-Tokens": "5000",
        "X-Mock-Cached-Tokens": "2048",
        "X-Mock-Completion-Tokens": "300",
        "X-Mock-Reasoning-Tokens": "100",
        "X-Mock-Web-Search-Requests": "2",
    }
    reply = rig.openai().responses.create(
        model=GPT, input="hello", service_tier="flex", extra_headers=headers
    )
    assert reply.service_tier == "flex"
    (call,) = rig.stored(1)
    assert (call.provider, call.endpoint, call.finish_reason) == ("openai", "/v1/responses", "stop")
    assert (call.input_tokens, call.cached_input_tokens) == (5000, 2048)
    assert (call.output_tokens, call.reasoning_tokens) == (300, 100)
    assert (call.service_tier, call.server_tool_uses) == ("flex", {"web_search": 2})
    want = catalog(
        GPT,
        "openai",
        "flex",
        input_tokens=5000,
        cache_read_tokens=2048,
        output_tokens=300,
        web_searches=2,
    )
    assert call.cost_usd == want
    assert rig.sent(rig.openai_upstream)["authorization"] == f"Bearer {OPENAI_KEY}"


def test_a_responses_stream_costs_what_the_whole_answer_does(rig: Rig) -> None:
    client = rig.openai()
    headers = {**PLAIN, "X-Mock-Cached-Tokens": "1024", "X-Mock-Cache-Write-Tokens": "512"}
    client.responses.create(
        model=GPT, input="hello", service_tier="priority", extra_headers=headers
    )
    events = list(
        client.responses.create(
            model=GPT, input="hello", service_tier="priority", stream=True, extra_headers=headers
        )
    )
    assert events[-1].type == "response.completed"
    assert sum(1 for e in events if e.type == "response.output_text.delta") > 1
    plain, streamed = rig.stored(2)
    for name in (
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "service_tier",
        "cost_usd",
        "finish_reason",
        "tokens_estimated",
    ):
        assert getattr(streamed, name) == getattr(plain, name), name
    assert streamed.ttft_ms is not None
    assert streamed.cost_usd == catalog(
        GPT,
        "openai",
        "priority",
        input_tokens=2000,
        cache_read_tokens=1024,
        cache_write_tokens=512,
        output_tokens=120,
    )


def test_a_responses_budget_reserves_by_max_output_tokens(rig: Rig) -> None:
    client = rig.openai(key=TIGHT_KEY)
    big = {"X-Mock-Prompt-Tokens": "8000", "X-Mock-Completion-Tokens": "4000"}
    # gpt-5-mini: 8,000 in and 4,000 out cost $0.01; 8,000 more out could cost $0.016.
    client.responses.create(model=GPT, input="x", max_output_tokens=8000, extra_headers=big)
    with pytest.raises(openai.RateLimitError) as refused:
        client.responses.create(model=GPT, input="x", max_output_tokens=8000, extra_headers=big)
    assert refused.value.code == "budget_exceeded"
    assert "has spent $0.01 of" in refused.value.message
    assert "(8,000 output tokens at most)" in refused.value.message
    assert rig.openai_upstream.stats()["total"] == 1


def test_a_responses_upstream_error_is_passed_on_and_recorded(rig: Rig) -> None:
    with pytest.raises(openai.RateLimitError):
        rig.openai().responses.create(
            model=GPT, input="x", extra_headers={"X-Mock-Error": "rate_limit"}
        )
    (call,) = rig.stored(1)
    assert (call.status, call.error_type, call.http_status, call.endpoint) == (
        "error",
        "rate_limit",
        429,
        "/v1/responses",
    )


def test_a_cut_messages_stream_keeps_its_exact_input_and_estimates_the_rest(rig: Rig) -> None:
    with (
        # The anthropic client lets its transport's error through while iterating.
        pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)),
        rig.claude().messages.stream(
            model=CLAUDE,
            max_tokens=1000,
            messages=MESSAGES,
            extra_headers={**CACHED, "X-Mock-Error": "stream_cut"},
        ) as stream,
    ):
        for _ in stream:
            pass
    (call,) = rig.stored(1)
    assert (call.status, call.error_type) == ("error", "provider_down")
    assert call.tokens_estimated
    # message_start said the input exactly; the output is at least one token a delta.
    assert (call.input_tokens, call.cached_input_tokens, call.cache_write_tokens) == (
        6000,
        2048,
        3000,
    )
    assert 1 < call.output_tokens < 200


def test_chat_completions_record_and_price_the_tier_that_served_them(rig: Rig) -> None:
    client = rig.openai()
    client.chat.completions.create(
        model=GPT, messages=MESSAGES, service_tier="priority", extra_headers=PLAIN
    )
    list(
        client.chat.completions.create(
            model=GPT, messages=MESSAGES, service_tier="priority", stream=True, extra_headers=PLAIN
        )
    )
    want = catalog(GPT, "openai", "priority", input_tokens=2000, output_tokens=120)
    assert want > catalog(GPT, "openai", input_tokens=2000, output_tokens=120)
    for call in rig.stored(2):
        assert (call.service_tier, call.cost_usd) == ("priority", want)
