"""A batch sent twice is stored once and counted once: the store tells the other sinks which
calls were new.

Exporters retry (a lost answer, a 503), collectors re-send, and aivitals' own spans may come
back: the store already skipped a call id it had, but the Prometheus counters, the live windows
and the budget ledger were handed the whole batch again. These tests hold every sink to the
store's answer, through the JSON ingest API and through the group commit under it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy
from prometheus_client import CollectorRegistry

from aivitals.model import Call
from aivitals.sinks.group_commit import GroupCommit
from aivitals.store import schema
from aivitals.store.sql import SqlStore

from .support.helpers import make_call
from .support.server_app import call_json, serve_app

REQUESTS = "aivitals_requests_total"


def requests_counted(registry: CollectorRegistry) -> float:
    """Every model call the Prometheus sink counted, whatever its labels."""
    return sum(
        sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name == REQUESTS
    )


def stored_count(store: SqlStore) -> int:
    with store.engine.connect() as connection:
        count = connection.scalar(sqlalchemy.select(sqlalchemy.func.count(schema.calls.c.id)))
    return int(count or 0)


def test_the_same_batch_posted_twice_is_stored_once_and_counted_once(tmp_path: Path) -> None:
    calls = [call_json(id=f"0190c3a0-0000-7000-8000-00000000000{i}") for i in range(3)]
    with serve_app(SqlStore.open(tmp_path / "aivitals.db")) as served:
        for _ in range(2):
            reply = served.client.post("/api/v1/calls", json={"calls": calls})
            assert reply.status_code == 202
            # Both answers name every call: the retry is acknowledged, not refused.
            assert len(reply.json()["ids"]) == 3
        assert served.runtime.recorder.flush(timeout_s=10)
        assert served.store is not None
        assert stored_count(served.store) == 3
        assert requests_counted(served.registry) == 3.0
        metrics = served.client.get("/metrics").text
    line = next(line for line in metrics.splitlines() if line.startswith(REQUESTS + "{"))
    assert line.endswith(" 3.0"), line


def test_a_batch_with_one_new_call_counts_only_that_one(tmp_path: Path) -> None:
    first = [call_json(id="0190c3a0-0000-7000-8000-0000000000a1")]
    second = [*first, call_json(id="0190c3a0-0000-7000-8000-0000000000a2")]
    with serve_app(SqlStore.open(tmp_path / "aivitals.db")) as served:
        assert served.client.post("/api/v1/calls", json={"calls": first}).status_code == 202
        assert served.client.post("/api/v1/calls", json={"calls": second}).status_code == 202
        assert served.runtime.recorder.flush(timeout_s=10)
        assert requests_counted(served.registry) == 2.0


def test_the_store_returns_exactly_the_calls_it_did_not_have(tmp_path: Path) -> None:
    store = SqlStore.open(tmp_path / "aivitals.db")
    try:
        old = make_call()
        assert store.write([old], []) == [old]
        again = make_call(id=old.id)
        fresh = make_call()
        twice = make_call(id=fresh.id)
        new = store.write([again, fresh, twice], [])
    finally:
        store.close()
    # The very objects given; of one id given twice, the first.
    assert len(new) == 1
    assert new[0] is fresh


def test_group_commit_gives_each_request_only_its_own_new_items() -> None:
    # Two requests merged into one write, both carrying the same call (two retries of one
    # export racing): the store inserts it once, and exactly one request may count it.
    shared = make_call()
    other = make_call()
    started = threading.Event()
    release = threading.Event()

    def write(items: list[Call]) -> list[Call]:
        started.set()
        release.wait(10)
        seen: set[str] = set()
        new = []
        for item in items:
            if item.id not in seen:
                seen.add(item.id)
                new.append(item)
        return new

    group: GroupCommit[Call] = GroupCommit(write)
    results: dict[str, list[Call]] = {}
    blocker = threading.Thread(target=lambda: results.update(first=group.commit([make_call()])))
    blocker.start()
    assert started.wait(10)
    twin = make_call(id=shared.id)
    a = threading.Thread(target=lambda: results.update(a=group.commit([shared, other])))
    b = threading.Thread(target=lambda: results.update(b=group.commit([twin])))
    a.start()
    b.start()
    while len(group._waiting) < 2:
        threading.Event().wait(0.001)
    release.set()
    for thread in (blocker, a, b):
        thread.join(10)
    # Which request leads the merged write is up to the threads; the count is not.
    claimed = [call.id for call in results["a"] + results["b"]]
    assert sorted(claimed) == sorted([shared.id, other.id])
