"""The gateway as `aivitals serve` mounts it: the real openai client in front, mock-llm behind.

Each test asserts what reached the upstream, what the store then holds and what ``/metrics``
says. Budgets run on an injected clock, so a day can end inside a test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from aivitals.attribution import Attribution
from aivitals.gateway.budgets import Budget, BudgetLedger
from aivitals.gateway.cache import ResponseCache
from aivitals.gateway.keys import GatewayKey, KeyRing
from aivitals.gateway.proxy import Gateway
from aivitals.gateway.tracing import tracer_for
from aivitals.gateway.upstream_client import UpstreamClient
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.model import Call
from aivitals.query import Queries
from aivitals.query.window import Window
from aivitals.recorder import Recorder
from aivitals.sdk.runtime import Runtime
from aivitals.server import create_app
from aivitals.sinks.prometheus import PrometheusSink
from aivitals.sinks.store import StoreSink
from aivitals.store.sql import SqlStore

from .support.servers import serve_in_thread

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
PARIS_EVENING = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)  # 22:00 in Europe/Paris
SEARCH_KEY = "sk-gw-search-0123456789abcdef"
LIMITED_KEY = "sk-gw-limited-0123456789abcdef"
APPS_KEY = "sk-gw-apps-0123456789abcdef"  # a team with no budget
# gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output (pinned in test_pricing).
# 4,000 in and 500 out: 0.0006 + 0.0003 = $0.0009 a call.
CALL_USD = Decimal("0.0009")
USAGE = {"X-Mock-Prompt-Tokens": "4000", "X-Mock-Completion-Tokens": "500"}


@dataclass
class Clock:
    now: datetime = PARIS_EVENING

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    origin: str
    upstream: MockServer
    store: SqlStore
    recorder: Recorder
    clock: Clock
    spans: InMemorySpanExporter
    sent: list[dict[str, str]] = field(default_factory=list)
    clients: list[openai.OpenAI] = field(default_factory=list)

    def client(self, key: str = SEARCH_KEY, **options: Any) -> openai.OpenAI:
        made = openai.OpenAI(base_url=f"{self.origin}/v1", api_key=key, max_retries=0, **options)
        self.clients.append(made)
        return made

    def upstream_requests(self, path: str = "/v1/chat/completions") -> int:
        return int(self.upstream.stats()["endpoints"].get(path, 0))

    def stored(self, expected: int | None = None) -> list[Call]:
        """The calls in the store, waiting (bounded) for ``expected`` of them: a stream is
        recorded just after its last byte reaches the client."""
        deadline = time.monotonic() + 10
        while True:
            assert self.recorder.flush(timeout_s=10)
            window = Window(self.clock.now - timedelta(days=40), self.clock.now + timedelta(days=1))
            calls = [c.call for c in Queries(self.store.engine).calls(window, limit=1000)]
            if expected is None or len(calls) >= expected or time.monotonic() > deadline:
                return sorted(calls, key=lambda call: call.id)
            time.sleep(0.02)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{self.origin}/metrics").text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        return sum(
            value
            for (sample, have), value in self.metrics().items()
            if sample == name and set(labels.items()) <= set(have)
        )


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=4, latency_median_ms=5, ttft_median_ms=1, hang_s=3.0)) as mock:
        yield mock


def build(
    upstream: MockServer, path: Path, clock: Clock, budgets: list[Budget]
) -> tuple[Gateway, Recorder, SqlStore, InMemorySpanExporter, list[dict[str, str]]]:
    store = SqlStore.open(path)
    ledger = BudgetLedger(budgets, timezone="Europe/Paris", clock=clock)
    metrics = PrometheusSink()
    recorder = Recorder(
        inline_sinks=[metrics, ledger], batch_sinks=[StoreSink(store)], flush_interval_s=0.05
    )
    metrics.watch(stats=recorder.stats, buffered=recorder.buffered, lost=recorder.lost)
    ledger.reload(Queries(store.engine))
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    sent: list[dict[str, str]] = []  # the headers of each request sent upstream

    def keep(method: str, url: str, headers: Mapping[str, str]) -> None:
        sent.append(dict(headers))

    gateway = Gateway(
        recorder=recorder,
        upstreams=Upstreams(
            [
                Upstream(
                    name="mock",
                    base_url=upstream.base_url,
                    models=("gpt-4o-mini", "text-embedding-3-small"),
                    timeout_s=1.0,
                )
            ]
        ),
        client=UpstreamClient(on_request=keep),
        keys=KeyRing(
            [
                GatewayKey(name="search", secret=SEARCH_KEY, team="search"),
                GatewayKey(name="limited", secret=LIMITED_KEY, team="batch", requests_per_minute=2),
                GatewayKey(name="apps", secret=APPS_KEY, team="apps"),
            ]
        ),
        budgets=ledger,
        cache=ResponseCache(ttl_s=600, max_bytes=1_000_000),
        cache_routes={"embeddings"},
        tracer=tracer_for(provider),
        now=clock,
    )
    return gateway, recorder, store, spans, sent


@pytest.fixture
def rig(upstream: MockServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Rig]:
    upstream.reset()
    clock = Clock()
    # Room for any test's calls unless a test asks for less (indirect parametrization): a
    # request without max_tokens reserves gpt-4o-mini's whole context window, about $0.077.
    usd = getattr(request, "param", Decimal("1"))
    budgets = [Budget(scope="team", value="search", period="day", usd=usd)]
    gateway, recorder, store, spans, sent = build(upstream, tmp_path / "a.db", clock, budgets)
    metrics = next(s for s in recorder.inline_sinks if isinstance(s, PrometheusSink))
    runtime = Runtime(recorder=recorder, prometheus=metrics, windows=None, defaults=Attribution())
    app = create_app(runtime=runtime, store=store, registry=CollectorRegistry(), gateway=gateway)
    with serve_in_thread(app) as origin:
        rig = Rig(origin, upstream, store, recorder, clock, spans, sent)
        yield rig
        for client in rig.clients:
            client.close()
    recorder.close()
    store.close()


def chat(client: openai.OpenAI, **headers: str) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={**USAGE, **headers}
    )


def capped(client: openai.OpenAI) -> Any:
    """A call that may answer 500 tokens at most: it reserves about $0.0003, and costs $0.0009
    (the mock reports 4,000 input tokens, more than the short body could hold)."""
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=500, extra_headers=USAGE
    )


@pytest.mark.parametrize("rig", [Decimal("0.001")], indirect=True)
def test_a_budget_refuses_a_call_whose_worst_case_does_not_fit_until_midnight(rig: Rig) -> None:
    client = rig.client()
    capped(client)  # $0.0009 of $0.001
    with pytest.raises(openai.RateLimitError) as refused:
        capped(client)  # up to $0.0003 more would pass the limit
    message = refused.value.response.json()["error"]["message"]
    assert message.startswith(
        "budget exceeded: team 'search' has spent $0.0009 of its daily budget of $0.001; "
        "this call could cost up to $0.000"
    )
    assert message.endswith("(500 output tokens at most); it resets at 2026-11-25 00:00 CET")
    assert refused.value.code == "budget_exceeded"
    # Spend alone leaves no room: nothing changes before the reset.
    assert refused.value.response.headers["x-should-retry"] == "false"
    # 22:00 in Paris: two hours to midnight.
    assert int(refused.value.response.headers["retry-after"]) == 2 * 3600
    assert rig.upstream_requests() == 1

    (stored,) = rig.stored(1)
    assert (stored.cost_usd, stored.team) == (CALL_USD, "search")
    assert rig.metric("aivitals_gateway_refusals_total", reason="budget") == 1
    assert rig.metric("aivitals_requests_total", model="gpt-4o-mini", status="ok") == 1
    assert rig.metric("aivitals_cost_usd_total", team="search") == pytest.approx(0.0009)

    rig.clock.now = datetime(2026, 11, 24, 23, 0, 1, tzinfo=UTC)  # 00:00:01 in Paris
    capped(client)
    assert rig.upstream_requests() == 2
    assert len(rig.stored(2)) == 2


def test_budget_spend_survives_a_restart(upstream: MockServer, tmp_path: Path) -> None:
    clock = Clock()
    budgets = [Budget(scope="team", value="search", period="day", usd=Decimal("0.001"))]
    path = tmp_path / "a.db"
    for run in ("spends", "restarted"):
        gateway, recorder, store, _, _ = build(upstream, path, clock, budgets)
        runtime = Runtime(recorder=recorder, prometheus=None, windows=None, defaults=Attribution())
        with serve_in_thread(create_app(runtime=runtime, store=store, gateway=gateway)) as origin:
            client = openai.OpenAI(base_url=f"{origin}/v1", api_key=SEARCH_KEY, max_retries=0)
            if run == "spends":
                capped(client)
            else:
                # Nothing spent in this process yet: the refusal comes from the store's figures.
                with pytest.raises(openai.RateLimitError, match=r"has spent \$0\.0009 of its"):
                    capped(client)
        recorder.close()
        store.close()


def test_a_wrong_or_missing_key_is_a_401_and_reaches_nothing(rig: Rig) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        chat(rig.client(key="sk-gw-not-a-real-key-000000"))
    assert refused.value.code == "invalid_api_key"
    response = httpx.post(
        f"{rig.origin}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
    )
    assert response.status_code == 401
    assert rig.upstream_requests() == 0
    assert rig.stored() == []
    assert rig.metric("aivitals_gateway_refusals_total", reason="auth") == 2
    assert rig.metric("aivitals_requests_total") == 0


def test_a_rate_limit_answers_429_with_retry_after_and_never_reaches_the_upstream(
    rig: Rig,
) -> None:
    client = rig.client(key=LIMITED_KEY)
    chat(client)
    chat(client)
    with pytest.raises(openai.RateLimitError) as refused:
        chat(client)
    assert refused.value.code == "rate_limit_exceeded"
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60
    assert rig.upstream_requests() == 2
    assert [c.team for c in rig.stored(2)] == ["batch", "batch"]
    assert rig.metric("aivitals_gateway_refusals_total", reason="rate_limit") == 1


def test_a_cached_route_answers_a_repeat_without_the_upstream(rig: Rig) -> None:
    client = rig.client()
    first = client.embeddings.create(model="text-embedding-3-small", input=["a b c d"])
    again = client.embeddings.create(model="text-embedding-3-small", input=["a b c d"])
    assert again.data[0].embedding == first.data[0].embedding
    assert rig.upstream_requests("/v1/embeddings") == 1

    miss, hit = rig.stored(2)
    assert (miss.cache, hit.cache) == ("miss", "hit")
    assert miss.cost_usd is not None and miss.cost_usd > 0
    assert hit.cost_usd == 0 and hit.saved_usd == miss.cost_usd
    assert hit.input_tokens == 0  # nothing was sent to the provider
    assert rig.metric("aivitals_cache_requests_total", result="hit") == 1
    assert rig.metric("aivitals_cache_requests_total", result="miss") == 1
    assert rig.metric("aivitals_cache_saved_usd_total") == pytest.approx(float(miss.cost_usd))
    assert rig.metric("aivitals_gateway_cache_entries") == 1
    # Asked not to use the cache: the upstream answers, recorded as a bypass.
    client.embeddings.create(
        model="text-embedding-3-small",
        input=["a b c d"],
        extra_headers={"X-Aivitals-Cache": "off"},
    )
    assert rig.upstream_requests("/v1/embeddings") == 2
    assert rig.stored(3)[-1].cache == "bypass"


def test_a_cached_answer_is_only_replayed_to_the_team_that_paid_for_it(rig: Rig) -> None:
    def embed(key: str) -> None:
        rig.client(key=key).embeddings.create(
            model="text-embedding-3-small", input=["the same body"]
        )

    embed(SEARCH_KEY)  # team search pays for it
    embed(SEARCH_KEY)
    assert rig.upstream_requests("/v1/embeddings") == 1
    # The same body from another team's key goes upstream: no level replays across tenants.
    embed(LIMITED_KEY)
    assert rig.upstream_requests("/v1/embeddings") == 2
    calls = rig.stored(3)
    assert [(c.team, c.cache) for c in calls] == [
        ("search", "miss"),
        ("search", "hit"),
        ("batch", "miss"),
    ]


def test_a_stream_is_cached_on_request_and_replayed_as_a_stream(rig: Rig) -> None:
    client = rig.client()

    def streamed() -> list[str]:
        chunks = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={**USAGE, "X-Aivitals-Cache": "on"},
        )
        return [c.choices[0].delta.content or "" for c in chunks if c.choices]

    first = streamed()
    again = streamed()
    assert again == first and len(first) > 2  # the same events, not one blob
    assert rig.upstream_requests() == 1
    miss, hit = rig.stored(2)
    assert miss.cost_usd == CALL_USD
    assert (hit.cache, hit.cost_usd, hit.saved_usd) == ("hit", Decimal(0), CALL_USD)
    assert hit.ttft_ms is not None


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        ("rate_limit", 429, "rate_limit"),
        ("server_error", 500, "provider_down"),
        ("timeout", 504, "timeout"),
    ],
)
def test_upstream_failures_reach_the_client_and_are_recorded(
    rig: Rig, fault: str, status: int, error_type: str
) -> None:
    with pytest.raises(openai.APIStatusError) as failed:
        chat(rig.client(), **{"X-Mock-Error": fault})
    assert failed.value.status_code == status
    (call,) = rig.stored(1)
    assert (call.status, call.error_type) == ("error", error_type)
    assert rig.metric("aivitals_requests_total", status="error", error_type=error_type) == 1


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b'{"model": "gpt-4o-mini", "messages": [', 400, "not valid JSON"),
        (b'{"model": "gpt-4o-mini"}', 400, "missing required field: messages"),
        (
            b'{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "no configured upstream serves model 'no-such-model'",
        ),
        (
            b'{"model": "gpt-4o-mini", "messages": "' + b"x" * (11 * 1024 * 1024) + b'"}',
            413,
            "over 10 MB",
        ),
    ],
    ids=["malformed-json", "no-messages", "unknown-model", "too-large"],
)
def test_bad_requests_get_a_clear_4xx_and_nothing_is_stored(
    rig: Rig, body: bytes, status: int, says: str
) -> None:
    response = httpx.post(
        f"{rig.origin}/v1/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {SEARCH_KEY}", "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == status
    assert says in response.json()["error"]["message"]
    assert rig.upstream_requests() == 0
    assert rig.stored() == []
    assert rig.metric("aivitals_gateway_refusals_total", reason="bad_request") == 1


def test_traceparent_is_honoured_propagated_and_returned(rig: Rig) -> None:
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    reply = rig.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"traceparent": incoming}
    )
    assert reply.headers["x-aivitals-trace-id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    (sent,) = rig.sent
    version, trace_id, parent, flags = sent["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
    assert SEARCH_KEY not in str(sent)  # a gateway key is never forwarded

    (call,) = rig.stored(1)
    assert call.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert call.parent_span_id == "00f067aa0ba902b7"
    spans = {span.name: span for span in rig.spans.get_finished_spans()}
    assert {"chat gpt-4o-mini", "auth", "budget", "upstream", "response"} <= set(spans)
    assert f"{spans['upstream'].context.span_id:016x}" == parent  # the upstream's parent span
    root = spans["chat gpt-4o-mini"]
    assert f"{root.context.span_id:016x}" == call.span_id
    assert root.attributes is not None
    assert root.attributes["gen_ai.usage.output_tokens"] == call.output_tokens
    assert {s.context.trace_id for s in spans.values()} == {int(call.trace_id, 16)}


def test_chat_stream_and_embeddings_land_in_the_store_and_metrics(rig: Rig) -> None:
    client = rig.client(key=APPS_KEY)
    chat(client, **{"X-Aivitals-Feature": "ask", "X-Mock-Cached-Tokens": "1024"})
    chunks = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={**USAGE, "X-Mock-TTFT-Ms": "20", "X-Mock-Latency-Ms": "60"},
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 500
    vectors = client.embeddings.create(
        model="text-embedding-3-small",
        input=["one two three"],
        extra_headers={"X-Aivitals-Cache": "off"},
    )
    whole, streamed, embedded = rig.stored(3)
    # 4,000 in of which 1,024 cached at half price: 2,976 x 0.15 + 1,024 x 0.075 + 500 x 0.60
    assert whole.cost_usd == Decimal("0.0004464") + Decimal("0.0000768") + Decimal("0.0003")
    assert (whole.feature, whole.team, whole.cached_input_tokens) == ("ask", "apps", 1024)
    assert streamed.cost_usd == CALL_USD and not streamed.tokens_estimated
    assert streamed.ttft_ms is not None and 20 <= streamed.ttft_ms < streamed.latency_ms
    assert embedded.operation == "embeddings" and embedded.cache == "bypass"
    assert embedded.input_tokens == vectors.usage.prompt_tokens > 0
    assert rig.metric("aivitals_requests_total", operation="chat", status="ok") == 2
    assert rig.metric("aivitals_requests_total", operation="embeddings", status="ok") == 1
    assert rig.metric("aivitals_time_to_first_token_seconds_count") == 1
    assert rig.metric("aivitals_tokens_total", model="gpt-4o-mini", type="output") == 1000
    assert rig.metric("aivitals_input_tokens_total", kind="cache_read") == 1024


def test_a_client_gone_mid_stream_is_stored_as_cancelled(rig: Rig) -> None:
    client = rig.client(timeout=30)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={**USAGE, "X-Mock-TTFT-Ms": "10", "X-Mock-Latency-Ms": "3000"},
    ) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
    # Leaving the block closed the connection after the first event, long before the end.
    (call,) = rig.stored(1)
    assert call.status == "cancelled" and call.tokens_estimated
    assert call.latency_ms < 2500
    assert rig.metric("aivitals_requests_total", status="cancelled") == 1
