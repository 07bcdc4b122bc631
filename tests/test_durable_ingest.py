"""A 2xx from ingest means the calls are committed; an outage is a 503, never a silent loss.

Also: what the store sink could not store by shutdown waits on disk for the next start, and
every buffer and every loss is a metric.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from aivitals.attribution import Attribution
from aivitals.recorder import Recorder
from aivitals.sdk.runtime import Runtime
from aivitals.server import create_app
from aivitals.server.context import ServerContext
from aivitals.sinks.group_commit import GroupCommit
from aivitals.sinks.memory import MemorySink
from aivitals.sinks.prometheus import PrometheusSink
from aivitals.sinks.store import StoreSink
from aivitals.store import schema
from aivitals.store.errors import StoreError
from aivitals.store.sql import SqlStore

from .support.helpers import make_call
from .support.server_app import NOW, call_json
from .test_store_sink import FakeClock, FlakyStore


def stored_ids(engine: sqlalchemy.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(sqlalchemy.select(schema.calls.c.id)))


class App:
    def __init__(self, store: FlakyStore, clock: FakeClock) -> None:
        self.store = store
        self.sink = StoreSink(store, clock=clock)
        self.log = MemorySink()
        self.prometheus = PrometheusSink()
        # The worker would deliver in an hour: whatever is stored after a 202 was stored by it.
        self.recorder = Recorder(
            inline_sinks=[self.prometheus],
            batch_sinks=[self.sink, self.log],
            flush_interval_s=3600,
            batch_size=100_000,
        )
        recorder = self.recorder
        self.prometheus.watch(stats=recorder.stats, buffered=recorder.buffered, lost=recorder.lost)
        runtime = Runtime(
            recorder=self.recorder,
            prometheus=self.prometheus,
            windows=None,
            defaults=Attribution(),
        )
        self.client = TestClient(
            create_app(
                runtime=runtime, store=store.inner, registry=CollectorRegistry(), now=lambda: NOW
            )
        )

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.prometheus.registry.get_sample_value(name, labels or {})


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    built = App(FlakyStore(SqlStore.open(tmp_path / "aivitals.db")), FakeClock())
    yield built
    built.recorder.close()


def test_a_202_means_the_calls_are_already_in_the_store(app: App) -> None:
    reply = app.client.post("/api/v1/calls", json={"calls": [call_json() for _ in range(5)]})
    assert reply.status_code == 202
    # No flush: the recorder's worker has not run, yet the calls are committed.
    assert sorted(stored_ids(app.store.engine)) == sorted(reply.json()["ids"])
    # Everything else still gets them, and the store does not get them twice.
    assert app.recorder.flush(timeout_s=10)
    assert len(app.log.calls) == 5
    assert len(stored_ids(app.store.engine)) == 5
    assert app.store.attempts == 1
    assert app.recorder.stats.accepted_calls == 5


def test_a_score_202_means_the_score_is_in_the_store(app: App) -> None:
    call = app.client.post("/api/v1/calls", json=call_json()).json()["ids"][0]
    reply = app.client.post("/api/v1/scores", json={"call_id": call, "name": "judge", "value": 0.5})
    assert reply.status_code == 202
    with app.store.engine.connect() as connection:
        names = list(connection.scalars(sqlalchemy.select(schema.scores.c.name)))
    assert names == ["judge"]


def test_a_store_outage_is_a_503_with_retry_after_and_nothing_is_recorded(app: App) -> None:
    app.store.failures = float("inf")
    reply = app.client.post("/api/v1/calls", json={"calls": [call_json() for _ in range(3)]})
    assert reply.status_code == 503
    assert int(reply.headers["retry-after"]) >= 1
    assert "nothing was recorded" in reply.json()["error"]
    # While backing off, the next batch is refused at once, without touching the database.
    attempts = app.store.attempts
    assert app.client.post("/api/v1/calls", json=call_json()).status_code == 503
    assert app.store.attempts == attempts
    assert app.recorder.flush(timeout_s=10)
    assert app.log.calls == []  # the batch went nowhere: its sender still holds it
    assert app.recorder.stats.accepted_calls == 0
    ready = app.client.get("/readyz")
    assert ready.status_code == 503
    assert "cannot be written" in ready.json()["checks"]["store"]


def test_readyz_recovers_once_writes_succeed_again(app: App) -> None:
    app.store.failures = 1
    assert app.client.post("/api/v1/calls", json=call_json()).status_code == 503
    assert app.client.get("/readyz").status_code == 503
    app.sink._backoff.retry_at = float("-inf")  # the back-off elapsed
    assert app.client.post("/api/v1/calls", json=call_json()).status_code == 202
    assert app.client.get("/readyz").status_code == 200


def test_a_refused_batch_is_a_422_and_its_neighbours_are_stored(app: App) -> None:
    good, bad = make_call(), make_call()
    app.store.refuse = {bad.id}
    errors: list[BaseException] = []

    def commit(call: object) -> None:
        try:
            app.sink.commit([call])  # type: ignore[list-item]  # a Call, typed loosely for the thread
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(c,)) for c in (good, bad)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stored_ids(app.store.engine) == [good.id]
    assert len(errors) == 1
    assert not isinstance(errors[0], StoreError) or not errors[0].retryable


def test_group_commit_merges_concurrent_requests_into_one_write() -> None:
    writes: list[list[int]] = []
    writing = threading.Event()
    release = threading.Event()

    def slow_write(items: list[int]) -> None:
        writes.append(items)
        writing.set()
        release.wait(10)

    group: GroupCommit[int] = GroupCommit(slow_write)
    first = threading.Thread(target=group.commit, args=([0],))
    first.start()
    assert writing.wait(10)  # the first request is writing alone
    others = [threading.Thread(target=group.commit, args=([i],)) for i in range(1, 20)]
    for thread in others:
        thread.start()
    while len(group._waiting) < 19:  # every other request queued behind it
        threading.Event().wait(0.001)
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert writes[0] == [0]
    assert len(writes) == 2
    assert sorted(writes[1]) == list(range(1, 20))


def test_group_commit_raises_the_outage_to_every_waiter_without_retrying_each() -> None:
    calls: list[list[int]] = []

    def failing(items: list[int]) -> None:
        calls.append(items)
        raise StoreError("database unreachable", retryable=True)

    group: GroupCommit[int] = GroupCommit(failing, isolate=lambda exc: False)
    with pytest.raises(StoreError, match="unreachable"):
        group.commit([1])
    assert calls == [[1]]


def test_what_close_could_not_store_waits_on_disk_and_is_stored_at_the_next_start(
    tmp_path: Path,
) -> None:
    inner = SqlStore.open(tmp_path / "aivitals.db")
    pending = inner.pending_dir
    flaky = FlakyStore(inner, failures=float("inf"))
    sink = StoreSink(flaky, clock=FakeClock(), pending_dir=pending)
    calls = [make_call() for _ in range(2500)]
    with pytest.raises(StoreError):
        sink.write_calls(calls)
    sink.close()
    assert (sink.spilled, sink.lost_at_close, sink.dropped) == (2500, 0, 0)
    assert pending == tmp_path / "aivitals.db.pending"
    assert len(list(pending.glob("*.calls.json"))) == 3  # chunks of 1,000

    reopened = SqlStore.open(tmp_path / "aivitals.db")
    try:
        again = StoreSink(reopened, pending_dir=pending)
        assert again.replayed == 2500
        assert sorted(stored_ids(reopened.engine)) == sorted(c.id for c in calls)
        assert list(pending.glob("*.json")) == []
    finally:
        reopened.close()


def test_what_cannot_be_kept_anywhere_is_counted_lost_and_exported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inner = SqlStore.open(tmp_path / "aivitals.db")
    flaky = FlakyStore(inner, failures=float("inf"))
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    sink = StoreSink(flaky, clock=FakeClock(), pending_dir=blocked)
    prometheus = PrometheusSink()
    recorder = Recorder(inline_sinks=[prometheus], batch_sinks=[sink], flush_interval_s=0.05)
    prometheus.watch(stats=recorder.stats, buffered=recorder.buffered, lost=recorder.lost)
    for _ in range(7):
        recorder.record(make_call())
    assert recorder.flush(timeout_s=10)
    assert prometheus.registry.get_sample_value("aivitals_queue_depth", {}) == 7
    assert (
        prometheus.registry.get_sample_value(
            "aivitals_buffered_items", {"sink": "store", "buffer": "store_retry"}
        )
        == 7
    )
    recorder.close()
    assert sink.lost_at_close == 7
    assert recorder.lost()[("store", "shutdown")] == 7
    assert (
        prometheus.registry.get_sample_value(
            "aivitals_lost_items_total", {"sink": "store", "reason": "shutdown"}
        )
        == 7
    )
    assert "7 calls and scores could not be stored before shutdown and are LOST" in caplog.text


def test_every_refused_batch_is_counted_by_why(app: App) -> None:
    context: ServerContext = app.client.app.state.context  # type: ignore[attr-defined]  # FastAPI

    def refused(kind: str, reason: str) -> float | None:
        labels = {"kind": kind, "reason": reason}
        return context.metrics.registry.get_sample_value(
            "aivitals_ingest_refused_items_total", labels
        )

    assert refused("calls", "invalid") == 0  # every series from the start
    # Refused by the ingest model (a string latency), by the record (TTFT over latency), and
    # while the store cannot be written.
    bad_type = {"calls": [call_json(latency_ms="slow"), call_json()]}
    assert app.client.post("/api/v1/calls", json=bad_type).status_code == 422
    over = {"calls": [call_json(latency_ms=10.0, ttft_ms=20.0) for _ in range(3)]}
    assert app.client.post("/api/v1/calls", json=over).status_code == 422
    assert refused("calls", "invalid") == 5
    app.store.failures = float("inf")
    assert app.client.post("/api/v1/calls", json={"calls": [call_json()] * 4}).status_code == 503
    assert refused("calls", "unavailable") == 4
    bad_score = {"call_id": "x", "name": "judge", "value": 7.0}
    assert app.client.post("/api/v1/scores", json=bad_score).status_code == 422
    assert refused("scores", "invalid") == 1


def test_a_call_the_sdk_cannot_make_valid_is_counted_lost() -> None:
    import aivitals
    from aivitals.sdk.runtime import configure, reset

    runtime = configure(store=False, endpoint=False, sinks=[MemorySink()])
    try:
        with aivitals.track(model="gpt\x00") as call:  # no usable model: nothing to record
            call.set_usage(input_tokens=1, output_tokens=1)
        assert aivitals.flush()  # the SDK records its calls off the caller's thread
        assert runtime.recorder.lost()[("sdk", "invalid")] == 1
        aivitals.score("some-call", "judge", float("nan"))
        assert runtime.recorder.lost()[("sdk", "invalid")] == 2
    finally:
        reset()
