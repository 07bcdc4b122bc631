"""The leader lease in the store (`aivitals.store.leases`), on SQLite and PostgreSQL, and the
alert service that evaluates only while it holds it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aivitals.alerts import AlertService
from aivitals.query import Queries
from aivitals.runtime import build_runtime
from aivitals.server import create_app
from aivitals.store.leases import Lease
from aivitals.store.sql import SqlStore
from tests.support.alerts import receiving
from tests.support.helpers import make_call

RULES = """
interval: 1s
notifiers:
  - name: hook
    type: webhook
    url: {url}
rules:
  - name: ErrorsAbove
    signal: error_rate
    window: 15m
    op: ">"
    threshold: 0.25
    severity: critical
    for: 0s
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def two_stores(store_target: str) -> Iterator[tuple[SqlStore, SqlStore]]:
    """One store opened twice, with an engine each, as two processes would."""
    first = SqlStore.open(store_target)
    second = SqlStore.open(store_target)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_one_holder_at_a_time_and_a_dead_one_is_taken_over(
    two_stores: tuple[SqlStore, SqlStore],
) -> None:
    clock = Clock()
    a = Lease(two_stores[0].engine, "alerts", holder="a", ttl_s=10, clock=clock)
    b = Lease(two_stores[1].engine, "alerts", holder="b", ttl_s=10, clock=clock)
    assert (a.hold(), b.hold()) == (True, False)
    clock.now += 9
    assert (a.hold(), b.hold()) == (True, False)  # renewed: 10 s from now again
    clock.now += 9
    assert b.hold() is False
    clock.now += 2  # a renewed 11 s ago: expired
    assert (b.hold(), a.hold()) == (True, False)
    row = a.read()
    assert row is not None and row.holder == "b"


def test_a_released_lease_is_taken_at_once_and_only_its_holder_publishes(
    two_stores: tuple[SqlStore, SqlStore],
) -> None:
    clock = Clock()
    a = Lease(two_stores[0].engine, "alerts", holder="a", ttl_s=60, clock=clock)
    b = Lease(two_stores[1].engine, "alerts", holder="b", ttl_s=60, clock=clock)
    assert a.hold()
    assert a.publish('{"from": "a"}')
    assert not b.publish('{"from": "b"}')
    row = b.read()
    assert row is not None and row.snapshot == '{"from": "a"}'
    a.release()
    assert b.hold() and not a.hold()
    assert b.publish('{"from": "b"}')
    row = a.read()
    assert row is not None and (row.holder, row.snapshot) == ("b", '{"from": "b"}')


def test_contenders_racing_for_a_free_lease_elect_exactly_one(store_target: str) -> None:
    stores = [SqlStore.open(store_target) for _ in range(4)]
    try:
        for round_ in range(5):
            leases = [
                Lease(s.engine, f"race-{round_}", holder=f"h{i}", ttl_s=60)
                for i, s in enumerate(stores)
            ]
            start = threading.Barrier(len(leases))
            won: list[bool] = [False] * len(leases)

            def contend(
                i: int,
                leases: list[Lease] = leases,
                start: threading.Barrier = start,
                won: list[bool] = won,
            ) -> None:
                start.wait()
                won[i] = leases[i].hold()

            threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(leases))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sum(won) == 1, won
    finally:
        for store in stores:
            store.close()


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_only_the_leader_evaluates_and_a_follower_serves_its_alerts(
    tmp_path: Path, two_stores: tuple[SqlStore, SqlStore]
) -> None:
    first, second = two_stores
    now = datetime.now(UTC)
    failed = {"status": "error", "error_type": "rate_limit"}
    first.write([make_call(started_at=now, **(failed if i < 4 else {})) for i in range(10)], [])
    with receiving() as hook:
        rules = tmp_path / "alerts.yaml"
        rules.write_text(RULES.format(url=hook.url))
        services = [
            AlertService(
                rules,
                queries=Queries(store.engine),
                state_path=tmp_path / f"state-{i}.json",
                lease=Lease(store.engine, "alerts", holder=f"worker-{i}"),
            )
            for i, store in enumerate((first, second))
        ]
        for service in services:
            service.start()
        try:
            wait_until(lambda: any(s.evaluating for s in services), "a leader")
            leader, follower = sorted(services, key=lambda s: not s.evaluating)
            assert not follower.evaluating

            def firing(service: AlertService) -> bool:
                engine = service.engine
                assert engine is not None
                return [a.phase for a in engine.alerts()] == ["firing"]

            wait_until(lambda: firing(leader) and firing(follower), "firing on both")
            wait_until(lambda: len(hook.received) >= 1, "the notification")

            # The follower's alert route answers with the leader's alerts.
            runtime = build_runtime(store=False, endpoint=False)
            try:
                client = TestClient(
                    create_app(runtime=runtime, store=None, alerts=follower),
                    raise_server_exceptions=True,
                )
                (alert,) = client.get("/api/v1/alerts").json()["alerts"]
                assert (alert["rule"], alert["phase"]) == ("ErrorsAbove", "firing")

                # A silence posted to the follower reaches the leader, and so does its end.
                made = client.post(
                    "/api/v1/alerts/silences",
                    json={"matchers": {"alertname": "ErrorsAbove"}, "for": "1h"},
                )
                assert made.status_code == 201
                silence_id = made.json()["id"]
                assert leader.engine is not None
                engine = leader.engine
                wait_until(
                    lambda: [s.id for s in engine.silences()] == [silence_id],
                    "the silence on the leader",
                )
                assert client.delete(f"/api/v1/alerts/silences/{silence_id}").status_code == 204
                wait_until(lambda: engine.silences() == [], "the silence ended on the leader")
                assert client.delete("/api/v1/alerts/silences/nope").status_code == 404
            finally:
                runtime.recorder.close()

            # The leader stops: the follower takes over from its state, without notifying again.
            assert leader.lease is not None and follower.lease is not None
            leader.stop()
            wait_until(lambda: follower.evaluating, "the take-over")
            taken = follower.lease.read()
            assert taken is not None and taken.holder == follower.lease.holder
            before = taken.snapshot_ms or 0

            def published_again() -> bool:
                row = follower.lease.read() if follower.lease is not None else None
                return row is not None and (row.snapshot_ms or 0) > before

            wait_until(published_again, "an evaluation by the new leader")
            assert firing(follower)
            assert len(hook.received) == 1  # one firing notification, from one engine
            # The state file is left alone: the store holds the state.
            assert not (tmp_path / "state-0.json").exists()
            assert not (tmp_path / "state-1.json").exists()
        finally:
            for service in services:
                service.stop()
