"""track, observe, context, record and score, through the process runtime."""

from __future__ import annotations

import asyncio
import logging
import threading
from decimal import Decimal

import pytest

import aivitals
from aivitals.sdk.runtime import reset

from .conftest import Recorded


def test_track_records_usage_cost_and_attribution(recorded: Recorded) -> None:
    with (
        aivitals.context(team="search", user="u-1"),
        aivitals.track(model="gpt-4o", feature="rerank", tags={"exp": "b"}) as call,
    ):
        call.set_usage(input_tokens=2000, cached_input_tokens=1536, output_tokens=100)
    (made,) = recorded.calls()
    assert made.id == call.id
    assert made.provider == "openai"  # found in the price catalog
    assert (made.team, made.user, made.feature, made.tags) == (
        "search",
        "u-1",
        "rerank",
        {"exp": "b"},
    )
    # Worked by hand in test_pricing's table: 464 x 2.5 + 1536 x 1.25 + 100 x 10 = 4080 µ$.
    assert made.cost_usd == Decimal("0.00408")
    assert made.latency_ms >= 0
    assert aivitals.last_call_id() == made.id


def test_track_accepts_provider_usage_objects(recorded: Recorded) -> None:
    raw = {"input_tokens": 100, "cache_read_input_tokens": 2000, "output_tokens": 250}
    with aivitals.track(model="claude-3-7-sonnet-latest", provider="anthropic") as call:
        call.set_usage(raw)
    (made,) = recorded.calls()
    assert made.input_tokens == 2100 and made.cached_input_tokens == 2000
    assert made.cost_usd == Decimal("0.00465")


def test_exception_is_classified_recorded_and_reraised_unchanged(recorded: Recorded) -> None:
    error = TimeoutError("upstream took too long")
    with pytest.raises(TimeoutError) as raised, aivitals.track(model="gpt-4o-mini"):
        raise error
    assert raised.value is error
    (made,) = recorded.calls()
    assert (made.status, made.error_type) == ("error", "timeout")


def test_cancellation_is_not_an_error(recorded: Recorded) -> None:
    async def work() -> None:
        async with aivitals.track(model="gpt-4o-mini"):
            await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(work())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (made,) = recorded.calls()
    assert made.status == "cancelled" and made.error_type is None


def test_invalid_usage_never_raises_and_the_call_is_kept(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="aivitals.sdk"),
        aivitals.track(model="gpt-4o-mini") as call,
    ):
        call.set_usage(input_tokens=10, cached_input_tokens=50)
    (made,) = recorded.calls()
    assert made.input_tokens == 0 and made.tags["aivitals.invalid"] == "cached_input_tokens"
    assert "cached_input_tokens" in caplog.text


def test_in_flight_gauge_rises_and_falls(recorded: Recorded) -> None:
    labels = {"provider": "openai", "model": "gpt-4o-mini"}
    with aivitals.track(model="gpt-4o-mini", provider="openai"):
        assert recorded.metric("aivitals_requests_in_flight", labels) == 1
    assert recorded.metric("aivitals_requests_in_flight", labels) == 0


def test_observe_sync_and_async_record_their_own_call(recorded: Recorded) -> None:
    @aivitals.observe(feature="summarise", model="gpt-4o-mini")
    def summarise(text: str) -> str:
        current = aivitals.current_call()
        assert current is not None
        current.set_usage(input_tokens=len(text), output_tokens=3)
        return text[:3]

    @aivitals.observe(feature="classify", model="gpt-4o-mini")
    async def classify(text: str) -> str:
        return text.upper()

    assert summarise("hello world") == "hel"
    assert asyncio.run(classify("x")) == "X"
    calls = recorded.calls()
    assert [c.feature for c in calls] == ["summarise", "classify"]
    assert calls[0].input_tokens == 11


def test_observe_lends_attribution_to_inner_calls_without_double_counting(
    recorded: Recorded,
) -> None:
    @aivitals.observe(feature="answer", user="u-9")
    def answer() -> None:
        for _ in range(2):
            with aivitals.track(model="gpt-4o-mini") as call:
                call.set_usage(input_tokens=10, output_tokens=1)

    answer()
    calls = recorded.calls()
    assert len(calls) == 2
    assert {(c.feature, c.user) for c in calls} == {("answer", "u-9")}


def test_observe_reads_a_returned_response(recorded: Recorded) -> None:
    class Usage:
        prompt_tokens = 50
        completion_tokens = 7

    class Response:
        model = "gpt-4o-mini-2024-07-18"
        usage = Usage()
        choices = ()

    @aivitals.observe
    def call_model() -> Response:
        return Response()

    call_model()
    (made,) = recorded.calls()
    assert made.model == "gpt-4o-mini-2024-07-18"
    assert (made.input_tokens, made.output_tokens) == (50, 7)


def test_observe_without_a_model_records_nothing(recorded: Recorded) -> None:
    @aivitals.observe(feature="plain")
    def plain() -> int:
        return 1

    assert plain() == 1
    assert recorded.calls() == []


def test_attribution_is_per_thread_and_per_task(recorded: Recorded) -> None:
    def worker(user: str) -> None:
        with aivitals.context(user=user), aivitals.track(model="gpt-4o-mini"):
            pass

    threads = [threading.Thread(target=worker, args=(f"u{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def task(user: str) -> None:
        with aivitals.context(user=user):
            await asyncio.sleep(0.001)
            async with aivitals.track(model="gpt-4o-mini"):
                await asyncio.sleep(0.001)

    async def main() -> None:
        await asyncio.gather(*(task(f"t{i}") for i in range(8)))

    asyncio.run(main())
    users = sorted(c.user or "" for c in recorded.calls())
    assert users == sorted([f"u{i}" for i in range(8)] + [f"t{i}" for i in range(8)])


def test_configure_defaults_apply(recorded: Recorded) -> None:
    memory = recorded.memory
    aivitals.configure(sinks=[memory], environment="staging", team="platform")
    with aivitals.track(model="gpt-4o-mini", team="search"):
        pass
    aivitals.flush()
    made = memory.calls[-1]
    assert (made.environment, made.team) == ("staging", "search")


def test_score_now_and_later(recorded: Recorded) -> None:
    with aivitals.track(model="gpt-4o-mini", feature="qa") as call:
        call.score("relevance", 0.8)
    later = aivitals.score(call.id, "helpfulness", 4, max_value=5, source="human")
    assert later is not None
    scores = recorded.scores()
    assert [(s.call_id, s.name) for s in scores] == [
        (call.id, "relevance"),
        (call.id, "helpfulness"),
    ]
    assert (
        recorded.metric(
            "aivitals_quality_score_count",
            {"name": "relevance", "model": "gpt-4o-mini", "feature": "qa"},
        )
        == 1
    )


def test_invalid_score_is_refused_without_raising(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    assert aivitals.score("c1", "relevance", float("nan")) is None
    assert aivitals.score("c1", "relevance", 7) is None
    assert recorded.scores() == []
    assert "outside the declared range" in caplog.text


def test_disabled_records_nothing(recorded: Recorded) -> None:
    aivitals.configure(sinks=[recorded.memory], enabled=False)
    with aivitals.track(model="gpt-4o-mini"):
        pass
    aivitals.flush()
    assert recorded.memory.calls == []


def test_bad_configuration_fails_at_configure_not_later(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(aivitals.ConfigError, match="Europe/Paris"):
        aivitals.configure(timezone="Mars/Olympus")
    monkeypatch.setenv("AIVITALS_METRICS_PORT", "http")
    with pytest.raises(aivitals.ConfigError, match="AIVITALS_METRICS_PORT"):
        aivitals.configure()


def test_a_dead_sink_never_reaches_the_caller_and_is_counted() -> None:
    class DeadStore:
        name = "store"

        def write_calls(self, calls: object) -> None:
            raise ConnectionError("database is gone")

        def write_scores(self, scores: object) -> None:
            raise ConnectionError("database is gone")

        def close(self) -> None:
            raise ConnectionError("database is gone")

    runtime = aivitals.configure(sinks=[DeadStore()], flush_interval_s=0.05)
    try:
        for _ in range(3):
            with aivitals.track(model="gpt-4o-mini") as call:
                call.set_usage(input_tokens=5, output_tokens=1)
        aivitals.score(call.id, "relevance", 0.5)
        assert aivitals.flush()
        assert runtime.prometheus is not None
        get = runtime.prometheus.registry.get_sample_value
        errors = get("aivitals_sink_errors_total", {"sink": "store"})
        assert errors is not None and errors >= 2  # at least one batch of calls, one of scores
        assert get("aivitals_sink_failed_items_total", {"sink": "store"}) == 4
        # The in-memory sinks still saw every call.
        labels = {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "operation": "chat",
            "status": "ok",
            "error_type": "",
        }
        assert get("aivitals_requests_total", labels) == 3
    finally:
        reset()
