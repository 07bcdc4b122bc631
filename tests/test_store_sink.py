"""The store sink rides out outages: it buffers, backs off, retries, and counts what it drops."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy

from aivitals.model import Call, Outcome, Score
from aivitals.recorder import Recorder
from aivitals.sinks import store as store_sink
from aivitals.sinks.base import BatchSink, Ticking, WholeBatchSink
from aivitals.sinks.store import StoreSink
from aivitals.store import schema
from aivitals.store.base import Store
from aivitals.store.errors import StoreError
from aivitals.store.sql import SqlStore

from .support.helpers import make_call

NOW = datetime(2025, 3, 9, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


class FlakyStore:
    """A real store that fails its next ``failures`` writes, and refuses calls in ``refuse``."""

    def __init__(self, inner: SqlStore, *, failures: float = 0) -> None:
        self.inner = inner
        self.engine = inner.engine
        self.failures = failures
        self.refuse: set[str] = set()
        self.attempts = 0
        self.deletes: list[tuple[datetime, int | None]] = []
        self.closed = False

    def write(
        self, calls: Sequence[Call], scores: Sequence[Score], outcomes: Sequence[Outcome] = ()
    ) -> Sequence[Call]:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("database unreachable", retryable=True)
        if any(call.id in self.refuse for call in calls):
            raise StoreError("value too long for column model")
        return self.inner.write(calls, scores)

    def delete_calls_before(self, cutoff: datetime, *, max_rows: int | None = None) -> int:
        self.deletes.append((cutoff, max_rows))
        return self.inner.delete_calls_before(cutoff, max_rows=max_rows)

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.closed = True
        self.inner.close()


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[FlakyStore]:
    store = FlakyStore(SqlStore.open(tmp_path / "aivitals.db"))
    yield store
    store.inner.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def stored_ids(store: FlakyStore) -> list[str]:
    with store.engine.connect() as connection:
        return list(connection.scalars(sqlalchemy.select(schema.calls.c.id)))


def batch(n: int) -> list[Call]:
    return [make_call() for _ in range(n)]


def test_the_sink_fits_the_recorder_and_the_store_protocol(flaky: FlakyStore) -> None:
    sink = StoreSink(flaky)
    assert isinstance(sink, BatchSink)
    assert isinstance(sink, Ticking)
    assert isinstance(flaky.inner, Store)
    assert isinstance(flaky, Store)


def test_an_outage_is_ridden_out_and_everything_arrives(
    flaky: FlakyStore, clock: FakeClock
) -> None:
    flaky.failures = 3
    sink = StoreSink(flaky, clock=clock)
    calls = batch(50)

    with pytest.raises(StoreError, match="database unreachable; 10 calls and scores held"):
        sink.write_calls(calls[:10])  # attempt 1 fails: back off 1 s
    with pytest.raises(StoreError, match="store unavailable, next retry in 1 s"):
        sink.write_calls(calls[10:20])  # within the back-off: held, the store left alone
    assert (flaky.attempts, sink.pending) == (1, 20)

    clock.seconds += 1
    with pytest.raises(StoreError, match="retrying in 2 s"):
        sink.write_calls(calls[20:30])  # attempt 2 fails: back off 2 s
    clock.seconds += 1
    with pytest.raises(StoreError, match="next retry in 1 s"):
        sink.write_calls(calls[30:40])
    clock.seconds += 1
    sink.tick()  # attempt 3, from the worker's tick: fails quietly, back off 4 s
    assert (flaky.attempts, sink.pending) == (3, 40)

    clock.seconds += 4
    sink.write_calls(calls[40:])  # attempt 4 succeeds, oldest first
    sink.write_scores([Score(call_id=calls[0].id, name="helpful", value=1.0)])
    assert (sink.pending, sink.dropped, sink.rejected) == (0, 0, 0)
    assert sorted(stored_ids(flaky)) == sorted(call.id for call in calls)
    assert flaky.attempts == 5


def test_the_backoff_doubles_up_to_its_cap(flaky: FlakyStore, clock: FakeClock) -> None:
    flaky.failures = float("inf")
    sink = StoreSink(flaky, clock=clock, backoff_s=1.0, max_backoff_s=4.0)
    waits = []
    for _ in range(5):
        with pytest.raises(StoreError) as error:
            sink.write_calls(batch(1))
        waits.append(str(error.value).rsplit("retrying in ", 1)[1])
        clock.seconds += 10
    assert waits == ["1 s", "2 s", "4 s", "4 s", "4 s"]


def test_beyond_its_bound_the_buffer_drops_the_oldest_and_counts_them(
    flaky: FlakyStore, clock: FakeClock
) -> None:
    flaky.failures = float("inf")
    sink = StoreSink(flaky, clock=clock, max_buffered=100)
    calls = batch(300)
    for start in range(0, 180, 60):
        with pytest.raises(StoreError):
            sink.write_calls(calls[start : start + 60])
    assert (sink.pending, sink.dropped) == (100, 80)
    with pytest.raises(StoreError, match="100 calls and scores held for retry, 200 dropped"):
        sink.write_calls(calls[180:])  # one batch larger than the whole buffer
    assert (sink.pending, sink.dropped) == (100, 200)

    flaky.failures = 0
    clock.seconds += 60
    sink.tick()
    assert sorted(stored_ids(flaky)) == sorted(call.id for call in calls[200:])
    assert sink.pending == 0


def test_refused_items_are_isolated_and_the_rest_is_stored(
    flaky: FlakyStore, clock: FakeClock
) -> None:
    sink = StoreSink(flaky, clock=clock)
    calls = batch(10)
    flaky.refuse = {calls[3].id}
    with pytest.raises(StoreError, match="refused some calls or scores, dropped: value too long"):
        sink.write_calls(calls)
    assert (sink.pending, sink.rejected, sink.dropped) == (0, 1, 0)
    assert sorted(stored_ids(flaky)) == sorted(c.id for c in calls if c.id != calls[3].id)
    sink.write_calls(batch(5))  # no back-off: the store itself is fine
    assert len(stored_ids(flaky)) == 14


def test_close_makes_one_last_attempt_despite_the_backoff(
    flaky: FlakyStore, clock: FakeClock
) -> None:
    flaky.failures = 1
    sink = StoreSink(flaky, clock=clock)
    with pytest.raises(StoreError):
        sink.write_calls(batch(7))
    sink.close()
    assert len(stored_ids(flaky)) == 7
    assert (sink.pending, sink.dropped, flaky.closed) == (0, 0, True)


def test_close_counts_what_it_could_not_store(flaky: FlakyStore, clock: FakeClock) -> None:
    flaky.failures = float("inf")
    sink = StoreSink(flaky, clock=clock)
    with pytest.raises(StoreError):
        sink.write_calls(batch(7))
    sink.close()
    assert (sink.pending, sink.dropped, flaky.closed) == (0, 7, True)


def test_the_recorder_counts_the_outage_and_everything_arrives(
    flaky: FlakyStore, clock: FakeClock
) -> None:
    flaky.failures = 1
    sink = StoreSink(flaky, clock=clock)
    recorder = Recorder(batch_sinks=[sink], flush_interval_s=0.02)
    for _ in range(5):
        recorder.record(make_call())
    assert recorder.flush()
    assert recorder.stats.sink_errors["store"] >= 1
    assert recorder.stats.sink_failed_items["store"] == 5
    assert sink.pending == 5

    clock.seconds += 1
    for _ in range(5):
        recorder.record(make_call())
    recorder.close()
    assert len(stored_ids(flaky)) == 10
    assert (sink.pending, sink.dropped, flaky.closed) == (0, 0, True)


def test_retention_runs_at_most_hourly_and_catches_up_in_helpings(
    flaky: FlakyStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sink, "_RETENTION_ROWS_PER_TICK", 2)
    old = NOW - timedelta(days=40)
    flaky.inner.write([make_call(started_at=old) for _ in range(5)], [])
    flaky.inner.write([make_call(started_at=NOW)], [])
    sink = StoreSink(flaky, clock=clock, now=lambda: NOW, retention=timedelta(days=30))

    for _ in range(5):
        sink.tick()
        clock.seconds += 1
    # 2 + 2 + 1 deleted on three ticks in a row; then nothing until an hour has passed.
    assert flaky.deletes == [(NOW - timedelta(days=30), 2)] * 3
    assert sink.deleted == 5
    assert len(stored_ids(flaky)) == 1

    clock.seconds += 3600
    sink.tick()
    assert len(flaky.deletes) == 4


def test_nonsense_settings_are_refused(flaky: FlakyStore) -> None:
    with pytest.raises(ValueError, match="max_buffered"):
        StoreSink(flaky, max_buffered=0)
    with pytest.raises(ValueError, match="retention must be positive"):
        StoreSink(flaky, retention=timedelta(0))


def test_configure_stores_recorded_calls(tmp_path: Path) -> None:
    import aivitals
    from aivitals.sdk.runtime import reset

    path = tmp_path / "app" / "aivitals.db"
    aivitals.configure(store=path, retention_days=30, prometheus=False, flush_interval_s=0.05)
    try:
        with aivitals.track(provider="openai", model="gpt-4o-mini", feature="search") as call:
            call.set_usage(input_tokens=1000, output_tokens=100)
        assert aivitals.flush()
    finally:
        reset()
    store = SqlStore.open(path)
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.select(schema.calls.c.feature, schema.calls.c.cost_usd)
            ).all()
            calls = connection.scalar(
                sqlalchemy.select(sqlalchemy.func.sum(schema.rollups.c.calls)).where(
                    schema.rollups.c.granularity == 86400
                )
            )
    finally:
        store.close()
    assert rows == [("search", "0.00021")]
    assert calls == 1


def test_a_drained_batch_goes_to_the_store_in_one_write(flaky: FlakyStore) -> None:
    # Calls and their scores in one transaction, not one each: behind a busy application every
    # statement of a second transaction costs the writer a wait for the GIL.
    sink = StoreSink(flaky)
    assert isinstance(sink, WholeBatchSink)
    recorder = Recorder(batch_sinks=[sink], flush_interval_s=60)
    calls = batch(5)
    for call in calls:
        recorder.record(call)
        for name in ("empty", "refusal"):
            recorder.record_score(Score(call_id=call.id, name=name, value=1.0))
    assert recorder.flush()
    assert flaky.attempts == 1
    with flaky.engine.connect() as connection:
        stored_scores = connection.scalar(
            sqlalchemy.select(sqlalchemy.func.count()).select_from(schema.scores)
        )
    assert (sorted(stored_ids(flaky)), stored_scores) == (sorted(c.id for c in calls), 10)
    recorder.close()


def test_a_failed_whole_batch_counts_every_item_it_held(
    flaky: FlakyStore, clock: FakeClock
) -> None:
    flaky.failures = 1
    sink = StoreSink(flaky, clock=clock)
    recorder = Recorder(batch_sinks=[sink], flush_interval_s=60)
    for call in batch(3):
        recorder.record(call)
        recorder.record_score(Score(call_id=call.id, name="empty", value=1.0))
    assert recorder.flush()
    assert recorder.stats.sink_failed_items["store"] == 6
    assert sink.pending == 6
    clock.seconds += 1
    recorder.close()
    assert (len(stored_ids(flaky)), sink.pending, sink.dropped) == (3, 0, 0)
