"""The LLM judge against a real `aivitals mock-llm` process: sampled, budget-capped, off the
caller's thread, recorded, and harmless when its endpoint is down, slow or talks nonsense.

What the judge says is steered by ``[mock-judge ...]`` directives in the judged answer
(docs/mock-llm.md, "Judge prompts"). Expected money comes from genai-prices, never from
aivitals' pricer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import httpx
import pytest
from prometheus_client import CollectorRegistry

from aivitals.config import ConfigError
from aivitals.content import CallContent, ContentMessage
from aivitals.model import Call, Score
from aivitals.quality.judge import LlmJudge
from aivitals.quality.judge_config import JudgeConfig, JudgeCriterion, SampleRule
from aivitals.quality.judge_metrics import JudgeCollector
from aivitals.query import Queries, parse_since
from aivitals.recorder import Recorder
from aivitals.retry import RetryPolicy
from aivitals.runtime import Runtime, build_runtime
from aivitals.sinks.memory import MemorySink
from aivitals.store.sql import SqlStore
from tests.support.realservers import ServerProcess, free_port, poll
from tests.test_server_serve import AIVITALS

pytestmark = pytest.mark.slow

JUDGE_MODEL = "gpt-4o-mini"
APP_MODEL = "gpt-4o"
FAST_RETRY = RetryPolicy(first_s=0.01, max_s=0.05, max_attempts=3)


class MockLlm(ServerProcess):
    """`aivitals mock-llm` as its own process: instant answers unless a directive says not."""

    name = "mock-llm"
    ready_path = "/mock/stats"

    def __init__(self, workdir: Path) -> None:
        super().__init__(AIVITALS, workdir)

    def command(self) -> list[str]:
        return [
            self.binary,
            "mock-llm",
            "--port",
            str(self.port),
            "--seed",
            "1",
            "--latency-median-ms",
            "0",
            "--latency-sigma",
            "0",
            "--ttft-median-ms",
            "0",
            "--hang-s",
            "30",
        ]

    def judge_requests(self) -> int:
        """Requests the judge model got (the application's model is another)."""
        stats = self.client.get(self.url + "/mock/stats").json()
        models: dict[str, int] = stats["models"]
        return models.get(JUDGE_MODEL, 0)

    def reset(self) -> None:
        self.client.post(self.url + "/mock/reset").raise_for_status()


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLlm]:
    with MockLlm(tmp_path_factory.mktemp("mock-llm")) as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(mock: MockLlm) -> None:
    mock.reset()


@dataclass
class Threads:
    """An inline sink: which thread recorded each call and score (inline sinks run on it)."""

    name = "threads"
    calls: list[tuple[Call, str]] = field(default_factory=list)
    scores: list[tuple[Score, str]] = field(default_factory=list)

    def on_call(self, call: Call) -> None:
        self.calls.append((call, threading.current_thread().name))

    def on_score(self, score: Score) -> None:
        self.scores.append((score, threading.current_thread().name))

    def app_calls(self) -> list[Call]:
        return [call for call, _ in self.calls if call.feature != "aivitals-judge"]


@dataclass
class Judged:
    runtime: Runtime
    memory: MemorySink
    threads: Threads

    @property
    def recorder(self) -> Recorder:
        return self.runtime.recorder

    @property
    def judge(self) -> LlmJudge:
        judge = self.recorder.quality.consumers["judge"]
        assert isinstance(judge, LlmJudge)
        return judge

    def flushed(self) -> Judged:
        assert self.recorder.flush(timeout_s=60)
        return self

    def judge_calls(self) -> list[Call]:
        return [call for call in self.memory.calls if call.feature == "aivitals-judge"]

    def scores(self, name: str | None = None) -> list[Score]:
        """The judge's scores (the built-in evaluators score the same calls too)."""
        judged = [s for s in self.memory.scores if s.source == "judge"]
        return [s for s in judged if name is None or s.name == name]

    def outcomes(self) -> dict[str, int]:
        return {k: v for k, v in self.judge.stats.outcomes.items() if v}

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        assert self.runtime.prometheus is not None
        return self.runtime.prometheus.registry.get_sample_value(name, labels or {})


def judge_config(mock_url: str, **overrides: Any) -> JudgeConfig:
    options: dict[str, Any] = {
        "base_url": mock_url + "/v1",
        "model": JUDGE_MODEL,
        "sample_rate": 1.0,
        "retry": FAST_RETRY,
        "timeout_s": 30.0,
    }
    options.update(overrides)
    return JudgeConfig(**options)


@contextmanager
def judged(config: JudgeConfig, **options: Any) -> Iterator[Judged]:
    memory, threads = MemorySink(), Threads()
    runtime = build_runtime(
        sinks=[memory, threads],
        store=options.pop("store", False),
        endpoint=False,
        registry=CollectorRegistry(),
        flush_interval_s=0.05,
        judge=config,
        **options,
    )
    try:
        yield Judged(runtime, memory, threads)
    finally:
        runtime.recorder.close(timeout_s=60)


def app_call(feature: str | None = "support", **fields: Any) -> Call:
    return Call(provider="openai", model=APP_MODEL, latency_ms=250.0, feature=feature, **fields)


def content(
    answer: str = "Paris is the capital of France.", *, context: bool = True
) -> CallContent:
    messages = [ContentMessage(role="user", text="What is the capital of France?")]
    if context:
        messages.insert(0, ContentMessage(role="system", text="France's capital is Paris."))
    return CallContent(messages=tuple(messages), output_text=answer, finish_reason="stop")


def test_rate_zero_judges_nothing(mock: MockLlm) -> None:
    with judged(judge_config(mock.url, sample_rate=0.0)) as run:
        for _ in range(10):
            run.recorder.record(app_call(), content())
        run.flushed()
        assert run.judge_calls() == [] and run.scores() == []
        assert mock.judge_requests() == 0
        assert run.outcomes() == {"not_sampled": 10}
        assert run.metric("aivitals_judge_requests_total", {"outcome": "not_sampled"}) == 10


def test_rate_one_judges_every_call_on_relevance_and_hallucination(mock: MockLlm) -> None:
    with judged(judge_config(mock.url)) as run:
        recorded = [run.recorder.record(app_call(), content()) for _ in range(10)]
        run.flushed()
        assert mock.judge_requests() == 10
        assert len(run.judge_calls()) == 10
        assert run.outcomes() == {"judged": 10}
        for name in ("judge.relevance", "judge.hallucination"):
            scores = run.scores(name)
            assert sorted(s.call_id for s in scores) == sorted(c.id for c in recorded)
            # The mock's default verdict: 0.9, and its reason as the comment.
            assert {(s.value, s.comment, s.source) for s in scores} == {
                (0.9, f"mock-llm: {name.removeprefix('judge.')} is 0.9", "judge")
            }
            assert {(s.model, s.feature) for s in scores} == {(APP_MODEL, "support")}


def test_a_fraction_samples_by_call_id_the_same_in_every_process(mock: MockLlm) -> None:
    calls = [app_call() for _ in range(120)]
    chosen = []
    for _ in range(2):  # two judges (two replicas) over the same calls
        with judged(judge_config(mock.url, sample_rate=0.5)) as run:
            for call in calls:
                run.recorder.record(call, content())
            run.flushed()
            chosen.append(sorted({s.call_id for s in run.scores()}))
            assert run.outcomes()["judged"] + run.outcomes()["not_sampled"] == 120
    assert chosen[0] == chosen[1]
    # Binomial(120, 0.5): outside 35..85 has a probability far below one in a million.
    assert 35 <= len(chosen[0]) <= 85


def test_rules_sample_by_feature(mock: MockLlm) -> None:
    rules = (SampleRule(features=("search",), rate=1.0),)
    with judged(judge_config(mock.url, sample_rate=0.0, rules=rules)) as run:
        search = [run.recorder.record(app_call("search"), content()) for _ in range(3)]
        for _ in range(3):
            run.recorder.record(app_call("chat"), content())
        run.flushed()
        assert {s.call_id for s in run.scores()} == {c.id for c in search}
        assert run.outcomes() == {"judged": 3, "not_sampled": 3}


def test_rules_sample_by_model_and_prompt_version(mock: MockLlm) -> None:
    rules = (SampleRule(models=(APP_MODEL,), prompt_versions=("v2",), rate=1.0),)
    with judged(judge_config(mock.url, sample_rate=0.0, rules=rules)) as run:
        hit = run.recorder.record(app_call(prompt_version="v2"), content())
        run.recorder.record(app_call(prompt_version="v1"), content())
        run.flushed()
        assert {s.call_id for s in run.scores()} == {hit.id}


def test_user_criteria_are_asked_and_scored(mock: MockLlm) -> None:
    criteria = (JudgeCriterion(name="politeness", description="Is it courteous? 1: very."),)
    answer = "Paris, my friend. [mock-judge politeness=0.2]"
    with judged(judge_config(mock.url, criteria=criteria)) as run:
        run.recorder.record(app_call(), content(answer))
        run.flushed()
        by_name = {s.name: s.value for s in run.scores()}
        assert by_name == {
            "judge.relevance": 0.9,
            "judge.hallucination": 0.9,
            "judge.politeness": 0.2,
        }


def test_hallucination_is_not_judged_without_context(mock: MockLlm) -> None:
    with judged(judge_config(mock.url)) as run:
        run.recorder.record(app_call(), content(context=False))
        run.flushed()
        # The mock grades exactly the criteria the prompt lists.
        assert [s.name for s in run.scores()] == ["judge.relevance"]


def test_nothing_to_judge_is_skipped_without_a_request(mock: MockLlm) -> None:
    with judged(judge_config(mock.url)) as run:
        run.recorder.record(app_call(), CallContent(output_text="an answer to nothing"))
        run.recorder.record(app_call(), content(answer=""))
        run.flushed()
        assert run.outcomes() == {"skipped": 2}
        assert mock.judge_requests() == 0


def test_judging_runs_on_the_judge_threads_never_the_callers_or_the_quality_worker(
    mock: MockLlm,
) -> None:
    with judged(judge_config(mock.url)) as run:
        caller = threading.current_thread().name
        run.recorder.record(app_call(), content())
        run.flushed()
        threads = {call.feature: name for call, name in run.threads.calls}
        assert threads["support"] == caller
        judge_thread = threads["aivitals-judge"]  # recorded right after its HTTP reply
        assert judge_thread.startswith("aivitals-judge-")
        assert judge_thread not in (caller, "aivitals-quality")
        judge_score_threads = {n for score, n in run.threads.scores if score.source == "judge"}
        assert judge_score_threads == {judge_thread}


def test_the_judges_calls_are_stored_priced_and_never_judged(mock: MockLlm, tmp_path: Path) -> None:
    db = tmp_path / "aivitals.db"
    usage = {"X-Mock-Prompt-Tokens": "1200", "X-Mock-Completion-Tokens": "80"}
    config = judge_config(mock.url, headers=usage)
    with judged(config, store=str(db)) as run:
        app = run.recorder.record(app_call(), content())
        run.flushed()
        run.flushed()  # a second pass: the judge's own call went nowhere near the judge
    assert mock.judge_requests() == 1
    store = SqlStore.open(db)
    try:
        queries = Queries(store.engine)
        stored = [item.call for item in queries.calls(parse_since("1h", now=datetime.now(UTC)))]
        detail = queries.call(app.id)
    finally:
        store.close()
    judge_calls = [c for c in stored if c.feature == "aivitals-judge"]
    assert len(judge_calls) == 1 and len(stored) == 2
    (judge_call,) = judge_calls
    assert (judge_call.model, judge_call.input_tokens, judge_call.output_tokens) == (
        JUDGE_MODEL,
        1200,
        80,
    )
    assert judge_call.cost_usd == catalog_usd(1200, 80)
    assert not isinstance(detail, str) and detail is not None
    assert {(s.name, s.comment) for s in detail.scores if s.source == "judge"} == {
        ("judge.relevance", "mock-llm: relevance is 0.9"),
        ("judge.hallucination", "mock-llm: hallucination is 0.9"),
    }


def catalog_usd(input_tokens: int, output_tokens: int) -> Decimal:
    """What genai-prices says a judge call with this usage costs."""
    price = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        model_ref=JUDGE_MODEL,
        provider_id="openai",
    )
    return Decimal(price.total_price)


def test_the_daily_budget_stops_judging_at_the_cap_and_resumes_the_next_day(
    mock: MockLlm,
) -> None:
    one = catalog_usd(1000, 100)
    # Paris: 21:30 UTC is 22:30 there, 23:30 UTC is 00:30 the next day (still the same UTC day).
    now = [datetime(2026, 3, 1, 21, 30, tzinfo=UTC)]
    config = judge_config(
        mock.url,
        max_daily_usd=one * Decimal("2.5"),
        timezone="Europe/Paris",
        max_concurrency=1,
        headers={"X-Mock-Prompt-Tokens": "1000", "X-Mock-Completion-Tokens": "100"},
    )
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory], flush_interval_s=0.05)
    judge = LlmJudge(config, recorder=recorder, clock=lambda: now[0])
    recorder.quality.register(judge, name="judge")
    registry = CollectorRegistry()
    registry.register(JudgeCollector(judge.stats, judge.budget, lambda: judge.queue_depth))
    try:
        for _ in range(5):  # one at a time: each is settled before the next is offered
            recorder.record(app_call(), content())
            assert recorder.flush(timeout_s=60)
        judge_calls = [c for c in memory.calls if c.feature == "aivitals-judge"]
        assert len(judge_calls) == 3  # 2 x one < 2.5 x one: a third is sent, then no more
        assert sum(c.cost_usd or 0 for c in judge_calls) == 3 * one
        assert judge.stats.outcomes["judged"] == 3
        assert judge.stats.outcomes["over_budget"] == 2
        assert registry.get_sample_value("aivitals_judge_budget_exhausted") == 1
        assert registry.get_sample_value("aivitals_judge_spent_usd") == float(3 * one)
        assert registry.get_sample_value("aivitals_judge_budget_usd") == float(one * Decimal("2.5"))
        now[0] += timedelta(hours=2)  # a new day in Paris
        recorder.record(app_call(), content())
        assert recorder.flush(timeout_s=60)
        assert judge.stats.outcomes["judged"] == 4
        assert registry.get_sample_value("aivitals_judge_budget_exhausted") == 0
    finally:
        recorder.close(timeout_s=60)


def test_a_down_endpoint_changes_nothing_for_the_application(mock: MockLlm) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with judged(judge_config(down)) as run:
        caller = threading.current_thread().name
        calls = [run.recorder.record(app_call(), content()) for _ in range(3)]
        # Returned, and recorded on the caller's thread, before the judge got anywhere.
        assert [c.id for c in run.threads.app_calls()] == [c.id for c in calls]
        assert {name for call, name in run.threads.calls if call.feature == "support"} == {caller}
        run.flushed()
        assert run.outcomes() == {"failed": 3}
        assert run.judge.stats.retries == 6  # 3 attempts each
        attempts = run.judge_calls()
        assert len(attempts) == 9
        assert {(c.status, c.error_type) for c in attempts} == {("error", "provider_down")}
        assert [c.id for c in run.memory.calls if c.feature == "support"] == [c.id for c in calls]
        assert run.scores() == []


def test_a_slow_endpoint_changes_nothing_for_the_application(mock: MockLlm) -> None:
    # The first judged answer hangs the mock (30 s); the judge gives up after its timeout.
    config = judge_config(
        mock.url, timeout_s=8.0, max_concurrency=1, queue_size=2, retry=RetryPolicy(max_attempts=1)
    )
    with judged(config) as run:
        stuck = run.recorder.record(app_call(), content("Paris. [mock-judge error=timeout]"))
        poll("the judge's request at the mock", lambda: mock.judge_requests() == 1)
        # While the judge waits on the mock, the application goes on: every call returns and is
        # recorded; the judge's queue takes two, the rest are dropped and counted.
        more = [run.recorder.record(app_call(), content()) for _ in range(20)]
        assert run.judge.stats.outcomes["failed"] == 0  # still waiting
        assert [c.id for c in run.threads.app_calls()] == [c.id for c in [stuck, *more]]
        run.flushed()
        assert run.outcomes() == {"failed": 1, "judged": 2, "dropped": 18}
        timed_out = [c for c in run.judge_calls() if c.status == "error"]
        assert [c.error_type for c in timed_out] == ["timeout"]
        assert run.metric("aivitals_judge_requests_total", {"outcome": "dropped"}) == 18


def test_a_malformed_verdict_is_counted_not_scored(mock: MockLlm) -> None:
    with judged(judge_config(mock.url)) as run:
        run.recorder.record(app_call(), content("Paris. [mock-judge malformed]"))
        run.flushed()
        assert run.outcomes() == {"malformed": 1}
        assert run.scores() == []
        assert len(run.judge_calls()) == 1  # it was paid for all the same
        assert run.metric("aivitals_judge_requests_total", {"outcome": "malformed"}) == 1


def test_a_criterion_graded_wrong_is_left_out_and_counted(mock: MockLlm) -> None:
    with judged(judge_config(mock.url)) as run:
        run.recorder.record(app_call(), content("Paris. [mock-judge relevance=invalid]"))
        run.flushed()
        assert [s.name for s in run.scores()] == ["judge.hallucination"]
        assert run.judge.stats.missing_criteria == 1
        assert run.metric("aivitals_judge_missing_criteria_total") == 1


def test_a_reply_that_is_not_json_fails_as_an_invalid_response(mock: MockLlm) -> None:
    config = judge_config(mock.url, retry=RetryPolicy(max_attempts=1))
    with judged(config) as run:
        run.recorder.record(app_call(), content("Paris. [mock-judge error=malformed]"))
        run.flushed()
        assert run.outcomes() == {"failed": 1}
        assert [(c.status, c.error_type) for c in run.judge_calls()] == [
            ("error", "invalid_response")
        ]


def test_a_rate_limited_judge_retries_as_told_then_succeeds(mock: MockLlm) -> None:
    # The mock answers 429 (Retry-After: 1) to the directed call, every time.
    config = judge_config(mock.url, retry=RetryPolicy(first_s=0.01, max_s=0.05, max_attempts=2))
    with judged(config) as run:
        run.recorder.record(app_call(), content("Paris. [mock-judge error=rate_limit]"))
        run.flushed()
        assert run.outcomes() == {"failed": 1}
        assert run.judge.stats.retries == 1
        assert [c.error_type for c in run.judge_calls()] == ["rate_limit", "rate_limit"]


def test_the_judges_own_calls_are_never_offered_back(mock: MockLlm) -> None:
    with judged(judge_config(mock.url)) as run:
        judge_like = app_call("aivitals-judge")
        run.judge.on_content(judge_like, content())
        run.flushed()
        assert run.outcomes() == {"skipped": 1}
        assert mock.judge_requests() == 0


def test_a_budget_on_a_model_without_a_price_is_refused_at_start(mock: MockLlm) -> None:
    config = judge_config(mock.url, model="no-such-judge-model", max_daily_usd=1)
    with pytest.raises(ConfigError, match=r"judge\.max_daily_usd: aivitals has no price"):
        build_runtime(store=False, endpoint=False, registry=CollectorRegistry(), judge=config)


def test_the_key_comes_from_its_variable(mock: MockLlm, monkeypatch: pytest.MonkeyPatch) -> None:
    config = judge_config(mock.url, api_key_env="AIVITALS_TEST_JUDGE_KEY")
    with pytest.raises(ConfigError, match="AIVITALS_TEST_JUDGE_KEY is not set"):
        build_runtime(store=False, endpoint=False, registry=CollectorRegistry(), judge=config)
    monkeypatch.setenv("AIVITALS_TEST_JUDGE_KEY", "sk-judge-test-key")
    with judged(config) as run:
        run.recorder.record(app_call(), content())
        run.flushed()
    sent = [r for r in mock.client.get(mock.url + "/mock/requests").json()["requests"]]
    assert ["authorization", "Bearer sk-judge-test-key"] in sent[-1]["headers"]


def test_close_drops_what_is_queued_and_counts_it(mock: MockLlm) -> None:
    config = judge_config(
        mock.url, timeout_s=8.0, max_concurrency=1, retry=RetryPolicy(max_attempts=1)
    )
    with judged(config) as run:
        run.recorder.record(app_call(), content("Paris. [mock-judge error=timeout]"))
        poll("the judge's request at the mock", lambda: mock.judge_requests() == 1)
        for _ in range(4):  # queued behind the one the mock holds
            run.recorder.record(app_call(), content())
        poll("four calls in the judge's queue", lambda: run.judge.queue_depth == 4)
        run.judge.close(timeout_s=30)
        assert run.outcomes() == {"dropped": 4, "failed": 1}
        run.judge.on_content(app_call(), content())  # after close: dropped, never sent
        assert run.outcomes() == {"dropped": 5, "failed": 1}
        assert mock.judge_requests() == 1


def test_a_judge_with_an_httpx_transport_error_never_raises_into_the_stage() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    recorder = Recorder(flush_interval_s=0.05)
    config = JudgeConfig(
        base_url="http://judge.invalid/v1", model=JUDGE_MODEL, sample_rate=1.0, retry=FAST_RETRY
    )
    judge = LlmJudge(config, recorder=recorder, transport=httpx.MockTransport(broken))
    recorder.quality.register(judge, name="judge")
    try:
        recorder.record(app_call(), content())
        assert recorder.flush(timeout_s=30)
        assert dict(judge.stats.outcomes)["failed"] == 1
        assert recorder.stats.quality_errors.get("judge", 0) == 0
    finally:
        recorder.close()


def test_a_forked_child_judges_on_workers_of_its_own(mock: MockLlm) -> None:
    # gunicorn-style workers fork after configure(): the threads do not come along.
    with judged(judge_config(mock.url)) as run:
        pid = os.fork()
        if pid == 0:  # the child: report by exit status only
            code = 1
            try:
                run.recorder.record(app_call("child"), content())
                flushed = run.recorder.flush(timeout_s=30)
                code = 0 if flushed and run.judge.stats.outcomes["judged"] == 1 else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert mock.judge_requests() == 1
