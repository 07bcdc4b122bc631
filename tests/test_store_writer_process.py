"""`ProcessWrittenStore`: the store's writes in a child process, the store's contract kept.

Real child processes (``python -m aivitals.store.writer_process``) on real SQLite files and a
real PostgreSQL (tests/support/postgres.py): what they store is row for row what an
in-process `SqlStore.write` stores, a child that dies loses nothing, and a fork writes through
a child of its own.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from aivitals.config import ConfigError, read_env
from aivitals.model import Call, Outcome, Score
from aivitals.runtime import build_runtime
from aivitals.sinks.store import StoreSink
from aivitals.store.copy import tables
from aivitals.store.errors import StoreError
from aivitals.store.sql import SqlStore
from aivitals.store.writer_process import ProcessWrittenStore, open_written

from .support.postgres import StoreTargets

AIVITALS = str(Path(sys.executable).with_name("aivitals"))
NOW = datetime.now(UTC).replace(microsecond=0)


def calls_of(n: int, seed: int = 3) -> list[Call]:
    """Calls with every kind of field a row and a rollup keep."""
    rng = random.Random(seed)
    made = []
    for _ in range(n):
        failed = rng.random() < 0.15
        input_tokens = rng.randrange(10, 5000)
        made.append(
            Call(
                provider=rng.choice(["openai", "anthropic"]),
                model=rng.choice(["gpt-4o", "gpt-4o-mini", "claude-sonnet-4"]),
                feature=rng.choice(["search", "chat", None]),
                team=rng.choice(["core", None]),
                user=rng.choice(["ann", "bob", None]),
                prompt_version=rng.choice(["v1", None]),
                status="error" if failed else "ok",
                error_type="rate_limit" if failed else None,
                latency_ms=rng.uniform(500, 9000),
                ttft_ms=rng.choice([None, rng.uniform(1, 400)]),
                input_tokens=input_tokens,
                cached_input_tokens=rng.randrange(0, input_tokens),
                output_tokens=rng.randrange(50, 800),
                reasoning_tokens=rng.randrange(0, 50),
                cost_usd=rng.choice([None, Decimal(rng.randrange(1, 10**9)) / 10**11]),
                started_at=NOW - timedelta(seconds=rng.randrange(3 * 86400), microseconds=17),
                tags={"run": str(rng.randrange(3)), "note": "é ✓"},
                cache=rng.choice([None, "hit", "miss"]),
            )
        )
    return made


def rows_of(target: str) -> dict[str, list[tuple[Any, ...]]]:
    store = SqlStore.open(target)
    try:
        with store.engine.connect() as connection:
            return {
                table.name: sorted(
                    (tuple(row) for row in connection.execute(sa.select(table))), key=repr
                )
                for table in tables()
            }
    finally:
        store.close()


def test_what_the_child_stores_is_row_for_row_what_a_write_here_stores(
    store_targets: StoreTargets,
) -> None:
    calls = calls_of(300)
    scores = [Score(call_id=call.id, name="relevance", value=0.25) for call in calls[::3]]
    outcomes = [Outcome.of(call.id, predicted="spam", actual="ham") for call in calls[::7]]
    here, there = store_targets("here"), store_targets("there")
    direct = SqlStore.open(here)
    child = ProcessWrittenStore.open(there)
    try:
        for store in (direct, child):
            for start in range(0, len(calls), 100):
                part = calls[start : start + 100]
                ids = {call.id for call in part}
                store.write(
                    part,
                    [score for score in scores if score.call_id in ids],
                    [outcome for outcome in outcomes if outcome.call_id in ids],
                )
    finally:
        direct.close()
        child.close()
    expected, got = rows_of(here), rows_of(there)
    assert got["calls"] and got["rollups"] and got["user_rollups"] and got["scores"]
    assert got == expected


def test_a_write_returns_the_calls_newly_stored_the_very_objects(tmp_path: Path) -> None:
    store = ProcessWrittenStore.open(tmp_path / "aivitals.db")
    try:
        first = calls_of(5)
        written = store.write(first, [])
        assert len(written) == 5 and all(a is b for a, b in zip(written, first, strict=True))
        assert store.write([], []) == []
        again = [first[0], *calls_of(2, seed=9), first[1]]
        new = store.write([again[1], again[1], *again], [])
        assert new == again[1:3]
        assert new[0] is again[1]
        with store.engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT count(*) FROM calls")) == 7
    finally:
        store.close()


def test_a_child_that_dies_fails_the_write_as_retryable_and_the_next_starts_another(
    tmp_path: Path,
) -> None:
    store = ProcessWrittenStore.open(tmp_path / "aivitals.db")
    try:
        store.write(calls_of(3), [])
        child = store._child
        assert child is not None and child.process.pid != os.getpid()
        child.process.kill()
        child.process.wait()
        lost = calls_of(4, seed=5)
        with pytest.raises(StoreError, match=r"writer process failed \(it exited") as caught:
            store.write(lost, [])
        assert caught.value.retryable
        assert store.write(lost, []) == lost
        assert store._child is not None and store._child.process.pid != child.process.pid
    finally:
        store.close()


def test_the_store_sink_over_a_killed_child_loses_nothing(tmp_path: Path) -> None:
    now = [0.0]
    sink = StoreSink(ProcessWrittenStore.open(tmp_path / "aivitals.db"), clock=lambda: now[0])
    first, second = calls_of(50), calls_of(50, seed=8)
    sink.write_calls(first)
    store = sink.store
    assert isinstance(store, ProcessWrittenStore) and store._child is not None
    store._child.process.kill()
    store._child.process.wait()
    with pytest.raises(StoreError, match="writer process"):
        sink.write_calls(second)
    assert sink.pending == 50
    now[0] += 60.0  # past the back-off
    sink.tick()
    assert sink.pending == 0 and sink.dropped == 0
    sink.close()
    with SqlStore.open(tmp_path / "aivitals.db").engine.connect() as connection:
        stored = set(connection.scalars(sa.text("SELECT id FROM calls")))
    assert stored == {call.id for call in first + second}


def test_a_child_that_cannot_open_the_store_says_why(tmp_path: Path) -> None:
    store = ProcessWrittenStore.open(tmp_path / "aivitals.db")
    try:
        # As if the database went away between this open and the child's.
        store._url = f"sqlite:///{tmp_path / 'missing-dir' / 'x' / 'aivitals.db'}"
        (tmp_path / "missing-dir").write_text("a file where the directory should be")
        with pytest.raises(StoreError, match="writer process: cannot create the directory"):
            store.write(calls_of(1), [])
    finally:
        store.close()


def test_close_lets_the_child_finish_and_exit(tmp_path: Path) -> None:
    store = ProcessWrittenStore.open(tmp_path / "aivitals.db")
    store.write(calls_of(20), [])
    child = store._child
    assert child is not None
    store.close()
    assert child.process.returncode == 0


def test_a_forked_process_writes_through_a_child_of_its_own(tmp_path: Path) -> None:
    store = ProcessWrittenStore.open(tmp_path / "aivitals.db")
    try:
        mine, theirs = calls_of(10), calls_of(10, seed=4)
        store.write(mine, [])
        parents_child = store._child
        assert parents_child is not None
        pid = os.fork()
        if pid == 0:  # pragma: no cover  # the fork: its answer is its exit status
            try:
                ok = store.write(theirs, []) == theirs and store._child is not parents_child
                os._exit(0 if ok else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert parents_child.process.poll() is None  # the fork left the parent's child alone
        assert store.write(calls_of(1, seed=6), []) != []
        assert store._child is parents_child
        with store.engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT count(*) FROM calls")) == 21
    finally:
        store.close()


def test_configure_with_store_writer_process_records_through_a_child(tmp_path: Path) -> None:
    runtime = build_runtime(
        store=tmp_path / "aivitals.db", store_writer="process", endpoint=False, evaluators=False
    )
    recorder = runtime.recorder
    try:
        (sink,) = [sink for sink in recorder.batch_sinks if isinstance(sink, StoreSink)]
        assert isinstance(sink.store, ProcessWrittenStore)
        for call in calls_of(30):
            recorder.record(call)
        recorder.flush(timeout_s=60)
        assert sink.store._child is not None
        with sink.store.engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT count(*) FROM calls")) == 30
    finally:
        recorder.close()


def test_serve_refuses_a_store_writer_it_does_not_know(tmp_path: Path) -> None:
    done = subprocess.run(
        [AIVITALS, "serve", "--port", "0", "--db", str(tmp_path / "a.db"), "--store-writer", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--store-writer must be 'thread' (in this process), 'process'" in done.stderr
    assert "or 'auto'" in done.stderr
    assert not (tmp_path / "a.db").exists()


def test_a_store_writer_that_is_neither_thread_nor_process_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"store_writer must be 'thread' .*'auto'.* got 'fork'"):
        build_runtime(store=tmp_path / "a.db", store_writer="fork", endpoint=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="AIVITALS_STORE_WRITER must be 'thread'"):
        read_env({"AIVITALS_STORE_WRITER": "threads"})
    assert read_env({"AIVITALS_STORE_WRITER": " Process "}).store_writer == "process"
    assert read_env({"AIVITALS_STORE_WRITER": "auto"}).store_writer == "auto"
    assert read_env({}).store_writer is None  # each entry point has its own default
    opened = SqlStore.open(tmp_path / "b.db")
    try:
        with pytest.raises(ConfigError, match="give store a path or URL"):
            build_runtime(store=opened, store_writer="process", endpoint=False)
    finally:
        opened.close()


def _writer_children(pid: int) -> list[int]:
    """The store writer processes among ``pid``'s children (Linux's /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if b"aivitals.store.writer_process" in cmdline:
                found.append(int(child))
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads Linux's /proc")
@pytest.mark.parametrize(("given", "children"), [((), 1), (("--store-writer", "thread"), 0)])
def test_serve_writes_its_store_from_a_child_unless_told_otherwise(
    tmp_path: Path, given: tuple[str, ...], children: int
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("auto picks the thread on one core")  # CI's machines have two
    env = {key: value for key, value in os.environ.items() if key != "AIVITALS_STORE_WRITER"}
    serve = subprocess.Popen(
        [AIVITALS, "serve", "--port", "0", "--db", str(tmp_path / "a.db"), *given],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert serve.stderr is not None
        first = serve.stderr.readline()
        assert "listening on" in first, first
        # auto starts the child before the server listens, so it is there now.
        assert len(_writer_children(serve.pid)) == children
        url = first.rsplit(" ", 1)[-1].strip()
        said = httpx.get(f"{url}/readyz", timeout=30).json()["checks"]["store"]
        assert said == (
            "ok; written by its writer process"
            if children
            else "ok; written from a thread of this process"
        )
    finally:
        serve.terminate()
        serve.communicate(timeout=60)
    assert serve.returncode == 0


def test_auto_writes_from_a_child_that_has_started(tmp_path: Path) -> None:
    store = open_written(tmp_path / "a.db", "auto")
    try:
        assert isinstance(store, ProcessWrittenStore)
        child = store._child
        assert child is not None and child.process.poll() is None
        made = calls_of(3)
        assert store.write(made, []) == made
    finally:
        store.close()


def test_auto_falls_back_to_the_thread_when_the_child_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A host that cannot run the child: here, no interpreter where the child would be run.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    with caplog.at_level("WARNING", logger="aivitals.store"):
        store = open_written(tmp_path / "a.db", "auto")
    try:
        assert type(store) is SqlStore
        assert len(store.write(calls_of(4), [])) == 4
    finally:
        store.close()
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "cannot start the store's writer process" in warning
    assert "written from a thread of this process instead" in warning
    # Asked for by name, the child is not second-guessed: its writes fail, retryably.
    explicit = open_written(tmp_path / "b.db", "process")
    try:
        with pytest.raises(StoreError, match="cannot start the store's writer process") as raised:
            explicit.write(calls_of(1), [])
        assert raised.value.retryable
    finally:
        explicit.close()


def test_auto_on_one_core_is_the_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    store = open_written(tmp_path / "a.db", "auto")
    try:
        assert type(store) is SqlStore
    finally:
        store.close()
    runtime = build_runtime(store=tmp_path / "c.db", store_writer="auto", endpoint=False)
    try:
        [sink] = [s for s in runtime.recorder.batch_sinks if isinstance(s, StoreSink)]
        assert type(sink.store) is SqlStore
    finally:
        runtime.recorder.close()
