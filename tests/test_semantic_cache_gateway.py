"""The semantic cache through the gateway: the official openai client, `aivitals mock-llm` as the
upstream, the calls read back from the store and the counters from /metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import httpx
import numpy as np
import openai
import pytest
import wordllama  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from aivitals.attribution import Attribution
from aivitals.gateway.cache import ResponseCache
from aivitals.gateway.embedding import WordLlamaEmbedder
from aivitals.gateway.keys import GatewayKey, KeyRing
from aivitals.gateway.proxy import Gateway
from aivitals.gateway.semantic_cache import SemanticCache
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

SEARCH_KEY = "sk-gw-search-0123456789abcdef"
APPS_KEY = "sk-gw-apps-0123456789abcdef"
USAGE = {"X-Mock-Prompt-Tokens": "4000", "X-Mock-Completion-Tokens": "500"}
SYSTEM = "You answer questions about programming briefly."
ASKED = "How do I reverse a list in Python?"
REPHRASED = "What's the way to reverse a Python list?"


@dataclass
class Rig:
    origin: str
    upstream: MockServer
    store: SqlStore
    recorder: Recorder
    clients: list[openai.OpenAI] = field(default_factory=list)

    def client(self, key: str = SEARCH_KEY) -> openai.OpenAI:
        made = openai.OpenAI(base_url=f"{self.origin}/v1", api_key=key, max_retries=0)
        self.clients.append(made)
        return made

    def upstream_requests(self) -> int:
        return int(self.upstream.stats()["endpoints"].get("/v1/chat/completions", 0))

    def stored(self, expected: int) -> list[Call]:
        """The calls in the store, waiting (bounded) for ``expected`` of them."""
        deadline = time.monotonic() + 10
        now = datetime.now(UTC)
        while True:
            assert self.recorder.flush(timeout_s=10)
            window = Window(now - timedelta(days=1), now + timedelta(days=1))
            calls = [c.call for c in Queries(self.store.engine).calls(window, limit=1000)]
            if len(calls) >= expected or time.monotonic() > deadline:
                return sorted(calls, key=lambda call: (call.started_at, call.id))
            time.sleep(0.02)

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.origin}/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and set(labels.items()) <= set(sample.labels.items())
        )


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=18, latency_median_ms=5, ttft_median_ms=1)) as mock:
        yield mock


@pytest.fixture
def rig(upstream: MockServer, tmp_path: Path) -> Iterator[Rig]:
    yield from serving(upstream, tmp_path, keyed=True)


@pytest.fixture
def keyless_rig(upstream: MockServer, tmp_path: Path) -> Iterator[Rig]:
    """No gateway keys: who a call is for comes from the X-Aivitals-* headers."""
    yield from serving(upstream, tmp_path, keyed=False)


def serving(upstream: MockServer, tmp_path: Path, *, keyed: bool) -> Iterator[Rig]:
    upstream.reset()
    store = SqlStore.open(tmp_path / "a.db")
    metrics = PrometheusSink()
    recorder = Recorder(
        inline_sinks=[metrics], batch_sinks=[StoreSink(store)], flush_interval_s=0.05
    )
    gateway = Gateway(
        recorder=recorder,
        upstreams=Upstreams(
            [Upstream(name="mock", base_url=upstream.base_url, models=("gpt-4o-mini", "gpt-4o"))]
        ),
        keys=KeyRing(
            [
                GatewayKey(name="search", secret=SEARCH_KEY, team="search"),
                GatewayKey(name="apps", secret=APPS_KEY, team="apps"),
            ]
            if keyed
            else []
        ),
        cache=ResponseCache(ttl_s=600, max_bytes=1_000_000),
        cache_routes={"chat"},
        semantic=SemanticCache(embedder=WordLlamaEmbedder(), scope="team"),
    )
    runtime = Runtime(recorder=recorder, prometheus=metrics, windows=None, defaults=Attribution())
    app = create_app(runtime=runtime, store=store, registry=CollectorRegistry(), gateway=gateway)
    with serve_in_thread(app) as origin:
        made = Rig(origin, upstream, store, recorder)
        yield made
        for client in made.clients:
            client.close()
    recorder.close()
    store.close()


def ask(client: openai.OpenAI, question: str, **options: Any) -> Any:
    system = options.pop("system", SYSTEM)
    headers = {**USAGE, **options.pop("headers", {})}
    return client.chat.completions.create(
        model=options.pop("model", "gpt-4o-mini"),
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        extra_headers=headers,
        **options,
    )


def catalog_usd(model: str) -> Decimal:
    """What genai-prices says the mock's reported usage (4,000 in, 500 out) costs."""
    price = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=4000, output_tokens=500),
        model_ref=model,
        provider_id="openai",
    )
    return Decimal(price.total_price)


def cosine_by_wordllama(a: str, b: str) -> float:
    """The similarity from wordllama's own API and numpy, not the code under test."""
    model = wordllama.WordLlama.load(
        cache_dir=Path(wordllama.__file__).parent, disable_download=True, trunc_dim=64
    )
    va, vb = model.embed([a, b], norm=True)
    return float(np.dot(va, vb))


def test_a_paraphrase_is_answered_from_cache_in_the_team_and_recorded_as_semantic(
    rig: Rig,
) -> None:
    search = rig.client()
    first = ask(search, ASKED)
    again = ask(search, REPHRASED)
    assert again.choices[0].message.content == first.choices[0].message.content
    assert again.id == first.id  # the same answer, replayed
    assert rig.upstream_requests() == 1

    miss, hit = rig.stored(2)
    assert (miss.cache, miss.cache_level) == ("miss", "semantic")
    assert miss.cost_usd == catalog_usd("gpt-4o-mini")
    assert (hit.cache, hit.cache_level, hit.cost_usd) == ("hit", "semantic", Decimal(0))
    assert hit.saved_usd == catalog_usd("gpt-4o-mini")
    assert hit.input_tokens == 0 and hit.team == "search"
    similarity = hit.tags["cache_similarity"]
    assert len(similarity.split(".")[1]) == 3
    assert float(similarity) == pytest.approx(cosine_by_wordllama(ASKED, REPHRASED), abs=1e-3)
    assert float(similarity) >= 0.90
    assert rig.metric("aivitals_cache_requests_total", result="hit", level="semantic") == 1
    assert rig.metric("aivitals_cache_requests_total", result="miss", level="semantic") == 1
    assert rig.metric("aivitals_cache_saved_usd_total") == pytest.approx(
        float(catalog_usd("gpt-4o-mini"))
    )


def test_another_team_asking_the_same_in_other_words_goes_upstream(rig: Rig) -> None:
    ask(rig.client(), ASKED)
    ask(rig.client(APPS_KEY), REPHRASED)
    assert rig.upstream_requests() == 2
    calls = rig.stored(2)
    assert [(c.team, c.cache) for c in calls] == [("search", "miss"), ("apps", "miss")]


def test_an_unrelated_question_is_a_miss(rig: Rig) -> None:
    search = rig.client()
    ask(search, ASKED)
    ask(search, "How do I center a div in CSS?")
    assert rig.upstream_requests() == 2
    assert [c.cache for c in rig.stored(2)] == ["miss", "miss"]


@pytest.mark.parametrize(
    "change",
    [
        {"system": "You answer questions about cooking briefly."},
        {"model": "gpt-4o"},
        {"tools": [{"type": "function", "function": {"name": "run_python", "parameters": {}}}]},
        {"temperature": 1.5},
    ],
    ids=["system-prompt", "model", "tools", "temperature"],
)
def test_the_same_question_in_other_words_with_another_request_around_it_is_a_miss(
    rig: Rig, change: dict[str, Any]
) -> None:
    search = rig.client()
    ask(search, ASKED)
    ask(search, REPHRASED, **change)
    assert rig.upstream_requests() == 2
    assert [c.cache for c in rig.stored(2)] == ["miss", "miss"]


def test_a_negated_question_is_a_miss_at_the_default_threshold(rig: Rig) -> None:
    search = rig.client()
    ask(search, "Is Python a compiled language?")
    ask(search, "Is Python not a compiled language?")
    assert rig.upstream_requests() == 2
    assert [c.cache for c in rig.stored(2)] == ["miss", "miss"]
    # Its embedding alone would have matched: the words-level check is what turned it down.
    assert (
        cosine_by_wordllama("Is Python a compiled language?", "Is Python not a compiled language?")
        > 0.9
    )


def test_a_stream_is_replayed_as_a_stream_to_a_paraphrase(rig: Rig) -> None:
    search = rig.client()

    def streamed(question: str) -> list[str]:
        chunks = ask(search, question, stream=True)
        return [c.choices[0].delta.content or "" for c in chunks if c.choices]

    first = streamed(ASKED)
    ask(search, REPHRASED)  # a whole answer is another request: not the stream's
    again = streamed(REPHRASED)
    assert again == first and len(first) > 2  # the same events, not one blob
    assert rig.upstream_requests() == 2
    calls = rig.stored(3)
    assert [(c.cache, c.cache_level) for c in calls] == [
        ("miss", "semantic"),
        ("miss", "semantic"),
        ("hit", "semantic"),
    ]
    assert calls[2].ttft_ms is not None and calls[2].saved_usd == calls[0].cost_usd


def test_asked_not_to_use_the_cache_a_paraphrase_goes_upstream_as_a_bypass(rig: Rig) -> None:
    search = rig.client()
    ask(search, ASKED)
    ask(search, REPHRASED, headers={"X-Aivitals-Cache": "off"})
    assert rig.upstream_requests() == 2
    assert [c.cache for c in rig.stored(2)] == ["miss", "bypass"]


def test_without_a_team_a_paraphrase_is_not_matched_and_with_one_it_is(keyless_rig: Rig) -> None:
    client = keyless_rig.client("sk-client-own-key")
    ask(client, ASKED)
    ask(client, REPHRASED)  # no team: not pooled with every other request that has none
    assert keyless_rig.upstream_requests() == 2
    team = {"X-Aivitals-Team": "search"}
    # Other questions: the exact level keys on the body alone, so ASKED again would be its hit.
    ask(client, "Who wrote Hamlet?", headers=team)
    ask(client, "Who is the author of Hamlet?", headers=team)
    assert keyless_rig.upstream_requests() == 3
    calls = keyless_rig.stored(4)
    assert [(c.team, c.cache, c.cache_level) for c in calls] == [
        (None, "miss", "exact"),
        (None, "miss", "exact"),
        ("search", "miss", "semantic"),
        ("search", "hit", "semantic"),
    ]
