"""aivitals' /metrics scraped by a real Prometheus and read back with PromQL.

The unit tests read the registry in process; this checks what only a real Prometheus can: that it
parses the exposition, that the names, labels and bucket bounds of docs/metrics.md are what
dashboards and alert rules will actually query, and that the documented queries answer.

Calls go in through the ingest API in two phases, "earlier" then "recent". Prometheus scrapes
every second; the test notes the timestamp of a scrape that holds exactly the earlier calls (t1)
and of one that holds all of them (t2). Counters read at any time then hold all calls; `rate` and
`increase` over exactly [t1, t2], evaluated at t2, hold exactly the recent calls. Nothing depends
on when scrapes happen, so nothing waits a fixed time or compares durations.

Every expected figure is worked out here from the calls posted and the bucket bounds written in
docs/metrics.md, never read from aivitals.
"""

from __future__ import annotations

import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from aivitals.server import create_app
from tests.support.realservers import Prometheus, Sample, need
from tests.support.server_app import build_runtime
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.slow  # starts Prometheus and a real HTTP server

# docs/metrics.md: "0.01, 0.02, 0.04, … 81.92 s", in milliseconds so that `latency <= bound`
# is exact (a latency on a bound belongs to that bucket: `le` is "less or equal").
BOUNDS_MS = (10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 40960, 81920)


@dataclass(frozen=True)
class Model:
    provider: str
    name: str
    feature: str
    team: str


FAST = Model("openai", "gpt-4o-mini", feature="search", team="growth")
SLOW = Model("anthropic", "claude-sonnet-4-5", feature="chat", team="support")


@dataclass(frozen=True)
class Posted:
    """One call as posted; the expectations are computed from these."""

    model: Model
    latency_ms: int
    status: str = "ok"
    error_type: str = ""
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "provider": self.model.provider,
            "model": self.model.name,
            "latency_ms": float(self.latency_ms),
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            # Sent, so the server keeps it rather than pricing from its catalog: the expected
            # spend is then ours, not the catalog's.
            "cost_usd": str(self.cost_usd),
            "feature": self.model.feature,
            "team": self.model.team,
        }
        if self.status != "ok":
            body["status"] = self.status
            body["error_type"] = self.error_type
        return body


def fast_ok(latency_ms: int) -> Posted:
    return Posted(
        FAST,
        latency_ms,
        input_tokens=1200,
        cached_input_tokens=1024,
        output_tokens=80,
        cost_usd=Decimal("0.00021"),
    )


def slow_ok(latency_ms: int) -> Posted:
    return Posted(
        SLOW, latency_ms, input_tokens=3000, output_tokens=600, cost_usd=Decimal("0.0183")
    )


def slow_error(latency_ms: int, error_type: str) -> Posted:
    return Posted(SLOW, latency_ms, status="error", error_type=error_type)


EARLIER = [
    # FAST: about a quarter second, one exactly on the 0.32 s bound, three slower.
    *(fast_ok(200 + 3 * i) for i in range(36)),
    fast_ok(320),
    *(fast_ok(ms) for ms in (400, 450, 500)),
    # SLOW: about three seconds; fast refusals and a timeout among them (the timeouts stay under
    # 5% of SLOW's calls, or its p95 would be theirs).
    *(slow_ok(2600 + 20 * i) for i in range(34)),
    *(slow_error(150, "rate_limit") for _ in range(3)),
    slow_error(30_000, "timeout"),
]
RECENT = [
    # FAST got slower: every recent call is between 0.32 and 0.64 s.
    *(fast_ok(380 + 10 * i) for i in range(20)),
    *(slow_ok(2800 + 25 * i) for i in range(18)),
    *(slow_error(150, "rate_limit") for _ in range(2)),
    slow_error(30_000, "timeout"),
]
ALL = EARLIER + RECENT


def outcome(call: Posted) -> tuple[str, str, str]:
    return (call.model.name, call.status, call.error_type)


def test_every_recent_series_already_exists_earlier() -> None:
    # `rate` over [t1, t2] only counts from t1 for series that Prometheus saw at t1; a series
    # born later would count from its first scrape.
    assert {outcome(c) for c in RECENT} <= {outcome(c) for c in EARLIER}


def quantile(q: float, latencies_ms: list[int]) -> float:
    """Prometheus' `histogram_quantile` (linear inside the bucket), over the documented bounds."""
    cumulative = [sum(ms <= bound for ms in latencies_ms) for bound in BOUNDS_MS]
    rank = q * len(latencies_ms)
    for i, count in enumerate(cumulative):
        if count >= rank:
            lower, below = (0, 0) if i == 0 else (BOUNDS_MS[i - 1], cumulative[i - 1])
            return (lower + (BOUNDS_MS[i] - lower) * (rank - below) / (count - below)) / 1000
    return BOUNDS_MS[-1] / 1000  # the rank is in the +Inf bucket


def by_labels(samples: list[Sample], *names: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.get(n, "") for n in names): s.value for s in samples}


@dataclass
class Scenario:
    prometheus: Prometheus
    origin: str
    t1: int  # ms: a scrape holding exactly EARLIER
    t2: int  # ms: a scrape holding EARLIER and RECENT

    @property
    def window(self) -> str:
        # The range includes its start in Prometheus 2.x (Debian 12 ships 2.42), so its first
        # sample is the one at t1 and `rate` has nothing to extrapolate.
        return f"{self.t2 - self.t1}ms"

    def recent(self, promql: str) -> list[Sample]:
        """``promql`` evaluated at t2; ``{window}`` in it is [t1, t2]."""
        return self.prometheus.query(promql.replace("{window}", self.window), at=self.t2 / 1000)


def post(client: httpx.Client, origin: str, calls: list[Posted]) -> None:
    reply = client.post(f"{origin}/api/v1/calls", json={"calls": [c.json() for c in calls]})
    assert reply.status_code == 202, reply.text
    assert reply.json()["accepted"] == len(calls)


def scrape_holding(prometheus: Prometheus, calls: int) -> int:
    """The timestamp (ms) of a scrape whose request counters add up to ``calls``."""
    prometheus.wait_for(
        "sum(aivitals_requests_total)", lambda s: len(s) == 1 and s[0].value == calls
    )
    [latest] = prometheus.query("max(timestamp(aivitals_requests_total))")
    return round(latest.value * 1000)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    binary = need("prometheus")
    runtime = build_runtime(None)
    app = create_app(runtime=runtime, store=None, registry=CollectorRegistry())
    try:
        with (
            serve_in_thread(app) as origin,
            Prometheus(
                binary,
                tmp_path_factory.mktemp("prometheus"),
                targets=[origin.removeprefix("http://")],
            ) as prometheus,
            httpx.Client(timeout=30) as client,
        ):
            prometheus.wait_until_scraped()
            post(client, origin, EARLIER)
            t1 = scrape_holding(prometheus, len(EARLIER))
            # Only after t1 is known: the scrape at t1 must not hold any recent call.
            post(client, origin, RECENT)
            t2 = scrape_holding(prometheus, len(ALL))
            assert t2 > t1
            yield Scenario(prometheus, origin, t1, t2)
    finally:
        runtime.recorder.close()


def test_prometheus_scrapes_the_server_cleanly(scenario: Scenario) -> None:
    [target] = scenario.prometheus.targets()
    assert target["health"] == "up"
    assert target["lastError"] == ""
    assert target["scrapeUrl"] == f"{scenario.origin}/metrics"
    assert scenario.prometheus.value('scrape_samples_scraped{job="aivitals"}') > 0


def test_requests_per_model_and_outcome(scenario: Scenario) -> None:
    samples = scenario.prometheus.query(
        "sum by (model, status, error_type) (aivitals_requests_total)"
    )
    assert by_labels(samples, "model", "status", "error_type") == Counter(map(outcome, ALL))
    samples = scenario.prometheus.query("sum by (provider) (aivitals_requests_total)")
    assert by_labels(samples, "provider") == Counter((c.model.provider,) for c in ALL)


def test_latency_buckets_follow_the_documented_bounds(scenario: Scenario) -> None:
    prometheus = scenario.prometheus
    fast = [c.latency_ms for c in ALL if c.model == FAST]
    samples = prometheus.query(f'aivitals_request_duration_seconds_bucket{{model="{FAST.name}"}}')
    assert {s.labels["operation"] for s in samples} == {"chat"}
    buckets = {s.labels["le"]: s.value for s in samples}
    expected_le = [str(ms / 1000) for ms in BOUNDS_MS]
    assert set(buckets) == {*expected_le, "+Inf"}
    for le, bound in zip(expected_le, BOUNDS_MS, strict=True):
        assert buckets[le] == sum(ms <= bound for ms in fast), le
    assert buckets["+Inf"] == len(fast)
    # The 320 ms call sits on a bound: counted in le="0.32", not only from le="0.64" on.
    assert buckets["0.32"] - buckets["0.16"] == sum(160 < ms <= 320 for ms in fast)
    for model in (FAST, SLOW):
        latencies = [c.latency_ms for c in ALL if c.model == model]
        where = f'{{model="{model.name}"}}'
        count = prometheus.value(f"aivitals_request_duration_seconds_count{where}")
        assert count == len(latencies)
        total = prometheus.value(f"aivitals_request_duration_seconds_sum{where}")
        assert total == pytest.approx(sum(latencies) / 1000, rel=1e-9)


def test_p95_latency_per_model_over_all_calls(scenario: Scenario) -> None:
    samples = scenario.prometheus.query(
        "histogram_quantile(0.95, sum by (model, le) (aivitals_request_duration_seconds_bucket))"
    )
    p95 = {model: value for (model,), value in by_labels(samples, "model").items()}
    assert set(p95) == {FAST.name, SLOW.name}
    for model in (FAST, SLOW):
        latencies = [c.latency_ms for c in ALL if c.model == model]
        assert p95[model.name] == pytest.approx(quantile(0.95, latencies), rel=1e-9)
    # The same, as a reader of the dashboard would put it.
    assert 0.32 < p95[FAST.name] <= 0.64
    assert 2.56 < p95[SLOW.name] <= 5.12


def test_the_documented_p95_query_sees_only_the_window(scenario: Scenario) -> None:
    samples = scenario.recent(
        "histogram_quantile(0.95,"
        " sum by (model, le) (rate(aivitals_request_duration_seconds_bucket[{window}])))"
    )
    p95 = {model: value for (model,), value in by_labels(samples, "model").items()}
    assert set(p95) == {FAST.name, SLOW.name}
    for model in (FAST, SLOW):
        latencies = [c.latency_ms for c in RECENT if c.model == model]
        assert p95[model.name] == pytest.approx(quantile(0.95, latencies), rel=1e-9)
    # Every recent FAST call is in (0.32, 0.64]: 95% of the way through that bucket.
    assert p95[FAST.name] == pytest.approx(0.32 + 0.32 * 0.95, rel=1e-9)


def test_the_documented_error_rate_query(scenario: Scenario) -> None:
    samples = scenario.recent(
        'sum by (error_type) (rate(aivitals_requests_total{status="error"}[{window}]))'
        " / ignoring(error_type) group_left sum(rate(aivitals_requests_total[{window}]))"
    )
    errors = Counter(c.error_type for c in RECENT if c.status == "error")
    assert by_labels(samples, "error_type") == pytest.approx(
        {(kind,): count / len(RECENT) for kind, count in errors.items()}, rel=1e-9
    )


def test_tokens_per_model_and_type(scenario: Scenario) -> None:
    samples = scenario.prometheus.query("sum by (model, type) (aivitals_tokens_total) > 0")
    expected: defaultdict[tuple[str, str], int] = defaultdict(int)
    for call in ALL:
        expected[call.model.name, "input"] += call.input_tokens
        expected[call.model.name, "output"] += call.output_tokens
    assert by_labels(samples, "model", "type") == {k: v for k, v in expected.items() if v}


def test_token_sums_count_every_token_once(scenario: Scenario) -> None:
    every = sum(call.input_tokens + call.output_tokens for call in ALL)
    assert scenario.prometheus.value("sum(aivitals_tokens_total)") == every
    assert (
        scenario.prometheus.value(
            "sum(aivitals_input_tokens_total) + sum(aivitals_output_tokens_total)"
        )
        == every
    )
    samples = scenario.prometheus.query("sum by (model, kind) (aivitals_input_tokens_total) > 0")
    expected: defaultdict[tuple[str, str], int] = defaultdict(int)
    for call in ALL:
        expected[call.model.name, "uncached"] += call.input_tokens - call.cached_input_tokens
        expected[call.model.name, "cache_read"] += call.cached_input_tokens
    assert by_labels(samples, "model", "kind") == {k: v for k, v in expected.items() if v}
    # No call here reasons: all of the output is the rest.
    samples = scenario.prometheus.query("sum by (kind) (aivitals_output_tokens_total)")
    output = sum(call.output_tokens for call in ALL)
    assert by_labels(samples, "kind") == {("non_reasoning",): output, ("reasoning",): 0}


def test_spend_per_model_feature_and_team(scenario: Scenario) -> None:
    samples = scenario.prometheus.query(
        "sum by (provider, model, feature, team) (aivitals_cost_usd_total)"
    )
    expected: defaultdict[tuple[str, ...], Decimal] = defaultdict(Decimal)
    for call in ALL:
        m = call.model
        expected[m.provider, m.name, m.feature, m.team] += call.cost_usd
    spent = by_labels(samples, "provider", "model", "feature", "team")
    assert spent == pytest.approx({k: float(v) for k, v in expected.items()}, rel=1e-12)
    total = scenario.prometheus.value("sum(aivitals_cost_usd_total)")
    assert total == pytest.approx(float(sum(c.cost_usd for c in ALL)), rel=1e-12)


def test_the_documented_spend_per_feature_query(scenario: Scenario) -> None:
    samples = scenario.recent("sum by (feature) (increase(aivitals_cost_usd_total[{window}]))")
    expected: defaultdict[tuple[str], Decimal] = defaultdict(Decimal)
    for call in RECENT:
        expected[(call.model.feature,)] += call.cost_usd
    assert by_labels(samples, "feature") == pytest.approx(
        {k: float(v) for k, v in expected.items()}, rel=1e-9
    )


def test_promtool_finds_no_problem_in_the_exposition(scenario: Scenario) -> None:
    promtool = need("promtool", package="prometheus")
    text = httpx.get(f"{scenario.origin}/metrics", timeout=30).text
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = (checked.stdout + checked.stderr).strip()
    assert (checked.returncode, report) == (0, "")
