"""Calls per second into the embedded store (SQLite), in process.

The calls are built first (varied models, features, teams, errors, costs, tags; 30 ms apart, so
batches touch one or two minute buckets as live traffic does); only ``SqlStore.write`` is timed:
inserting calls, checking their ids, folding them into the minute, hour and day rollups, commit.

    python benchmarks/bench_store_ingest.py [--calls 200000] [--batch 1000] [--write docs/store.md]

``--url postgresql+psycopg://user@host:port/db`` times the same writes into that (empty)
PostgreSQL database instead, and prints its figure without touching any file.

``--busy`` measures the store under a busy application instead: the application thread records
in a tight loop for ``--seconds`` (``--app sdk``: ``aivitals.track`` plus ``set_usage``, the
default SQLite store behind `aivitals.configure`; ``--app record``: ``Recorder.record`` of built
calls, a faster loop; ``--app spin``: a pure-Python loop recording nothing while a thread writes
to the store, the store's own share of the GIL) while the recorder's worker writes to the store. It reports the calls a
second the store took meanwhile, the calls dropped (counted by the recorder: its queue was full),
and the store worker's wall and CPU time a call; the reference, in the same run, is the same
writes (`StoreSink.write_calls`, batches of the recorder's 1,000) from a thread while the
application thread waits. The issue's target: at least 10,000 calls a second while busy.

    python benchmarks/bench_store_ingest.py --busy [--seconds 5] [--app sdk|record] [--write PATH]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).parent))

import msgspec

import aivitals
from aivitals.model import Call, ErrorType
from aivitals.recorder import BATCH_SIZE, Recorder
from aivitals.sinks.store import StoreSink
from aivitals.store import schema
from aivitals.store.rows import call_row
from aivitals.store.sql import SqlStore
from aivitals.store.writer_process import ProcessWrittenStore
from report import cpu_seconds, machine_line, write_section

MODELS = ("gpt-4o-mini", "gpt-4o", "o3-mini", "claude-3-7-sonnet-latest")
FEATURES = ("search", "chat", "summarise")
TEAMS = ("core", "growth")
ERRORS: tuple[ErrorType, ...] = ("rate_limit", "timeout", "provider_down")


def make_calls(n: int, *, seed: int = 7, start: datetime | None = None) -> list[Call]:
    """``n`` varied, priced calls, 30 ms apart from ``start``."""
    rng = random.Random(seed)
    began = start or datetime(2025, 6, 1, tzinfo=UTC)
    calls = []
    for i in range(n):
        failed = rng.random() < 0.03
        input_tokens = rng.randint(50, 4000)
        output_tokens = 0 if failed else rng.randint(10, 800)
        # One call in 50 has no known price (cost None), as with a self-hosted model.
        cost = None if i % 50 == 0 else Decimal(input_tokens * 15 + output_tokens * 60) / 10**8
        latency_ms = rng.lognormvariate(6.5, 0.6)
        # The first token comes within the call (the record refuses a longer TTFT).
        ttft_ms = min(rng.lognormvariate(5.5, 0.5), latency_ms)
        calls.append(
            Call(
                provider="anthropic" if i % 4 == 3 else "openai",
                model=MODELS[i % 4],
                latency_ms=latency_ms,
                ttft_ms=None if failed else ttft_ms,
                started_at=began + timedelta(milliseconds=30 * i),
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=cost,
                price_source="bench",
                status="error" if failed else "ok",
                error_type=rng.choice(ERRORS) if failed else None,
                feature=FEATURES[i % 3],
                team=TEAMS[i % 2],
                user=f"user-{rng.randint(1, 5000)}",
                environment="prod",
                tags={"region": "eu"} if i % 5 == 0 else {},
            )
        )
    return calls


def ingest_benchmark(path: str | Path, calls: int, *, batch_size: int = 1000) -> float:
    """Write ``calls`` calls into a new store at ``path`` in batches; return calls per second."""
    batch = make_calls(calls)
    store = SqlStore.open(path)
    try:
        started = time.perf_counter()
        for offset in range(0, calls, batch_size):
            store.write(batch[offset : offset + batch_size], [])
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    return calls / elapsed


def bare_sqlite_benchmark(path: str | Path, calls: int, *, batch_size: int = 1000) -> float:
    """The reference: the same calls as rows into the same table with bare ``sqlite3``.

    Same file settings and one transaction per batch, but no SQLAlchemy, no duplicate check
    and no rollups: what a hand-written insert loop costs. Returns calls per second.
    """
    batch = make_calls(calls)
    SqlStore.open(path).close()  # the schema, so the table and its indexes match
    names = [column.name for column in schema.calls.columns]
    sql = f"INSERT INTO calls ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    try:
        started = time.perf_counter()
        for offset in range(0, calls, batch_size):
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(sql, [call_row(c) for c in batch[offset : offset + batch_size]])
            connection.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return calls / elapsed


BUSY_TARGET = 10_000  # calls a second into the store while the application is busy (issue 17)
BATCH = BATCH_SIZE  # the recorder's batch size (1,000 items)


def thread_cpu_s(native_id: int) -> float:
    """User plus system CPU time one thread of this process has used, from ``/proc``."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stored_calls(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT count(*) FROM calls").fetchone()[0])
    finally:
        connection.close()


def _sdk_loop(stop: Callable[[], bool]) -> int:
    """The application: a tracked call, usage set, in a tight loop; returns the calls made."""
    made = 0
    while not stop():
        for index in range(100):
            with aivitals.track(
                model=MODELS[index % 4], feature=FEATURES[index % 3], team=TEAMS[index % 2]
            ) as call:
                call.set_usage(input_tokens=100 + index, output_tokens=20)
        made += 100
    return made


def spin_benchmark(folder: Path, calls: int) -> dict[str, float]:
    """The store's own share: a thread writes ``calls`` SDK-shaped calls (`StoreSink.write_calls`,
    batches of `BATCH`) while the application thread spins in pure Python, recording nothing."""
    batch = app_calls(calls, "sdk")
    sink = StoreSink(SqlStore.open(folder / "spin.db"))
    times: dict[str, float] = {}

    def write() -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        for offset in range(0, calls, BATCH):
            sink.write_calls(batch[offset : offset + BATCH])
        times["elapsed"] = time.perf_counter() - started
        times["cpu"] = time.thread_time() - cpu

    thread = threading.Thread(target=write)
    thread.start()
    spun = 0
    while thread.is_alive():
        for _ in range(1000):
            spun += 1
    thread.join()
    sink.close()
    elapsed = times["elapsed"]
    return {
        "made": calls,
        "elapsed": elapsed,
        "during": calls,
        "dropped": 0,
        "final": calls,
        "cpu_us": 1e6 * times["cpu"] / calls,
        "child_cpu_us": 0.0,
    }


def busy_benchmark(
    folder: Path, seconds: float, app: str, writer: Literal["thread", "process"] = "thread"
) -> dict[str, float]:
    """The application thread records for ``seconds`` while the recorder writes to the store
    (from its worker thread, or through a writer process)."""
    if app == "spin":
        return spin_benchmark(folder, 20_000)
    path = folder / "busy.db"
    runtime = aivitals.configure(store=path, store_writer=writer)
    recorder = runtime.recorder
    worker = recorder._worker  # the thread whose CPU time the store write is
    assert worker is not None and worker.native_id is not None
    template = app_calls(1000, _SHAPE[app])
    started = time.perf_counter()
    deadline = started + seconds
    cpu_before = thread_cpu_s(worker.native_id)
    if app == "sdk":
        made = _sdk_loop(lambda: time.perf_counter() >= deadline)
    else:
        made = 0
        replace = msgspec.structs.replace
        while time.perf_counter() < deadline:
            for call in template:
                # A new id each time, so the store keeps every call (a resent id is skipped).
                recorder.record(replace(call, id=f"{made:024x}"))
                made += 1
    elapsed = time.perf_counter() - started
    cpu = thread_cpu_s(worker.native_id) - cpu_before
    during = stored_calls(path)
    child = writer_process_cpu_s(recorder)
    recorder.flush(timeout_s=None)  # what is queued is stored, however long the machine takes
    aivitals.shutdown()
    # Counted once everything is through: the SDK hands calls to the recorder from a thread of
    # its own, which may still be recording (and the recorder dropping) after the loop ends.
    dropped = recorder.stats.dropped_calls
    final = stored_calls(path)
    return {
        "made": made,
        "elapsed": elapsed,
        "during": during,
        "dropped": dropped,
        "final": final,
        "cpu_us": 1e6 * cpu / max(during, 1),
        "child_cpu_us": 1e6 * child / max(during, 1),
    }


def writer_process_cpu_s(recorder: Recorder) -> float:
    """CPU time the store's writer process has used (0 without one): the SQL's share, off the
    application's process."""
    for sink in recorder.batch_sinks:
        store = getattr(sink, "store", None)
        child = getattr(store, "_child", None)
        if isinstance(store, ProcessWrittenStore) and child is not None:
            return cpu_seconds(child.process.pid)
    return 0.0


def app_calls(n: int, app: str) -> list[Call]:
    """Calls shaped as the busy loop records them: ``sdk``'s (no user; models, features and
    teams cycled) or ``record``'s (`make_calls`)."""
    if app == "record":
        return make_calls(n)
    began = datetime.now(UTC)
    return [
        Call(
            provider="anthropic" if i % 4 == 3 else "openai",
            model=MODELS[i % 4],
            feature=FEATURES[i % 3],
            team=TEAMS[i % 2],
            latency_ms=0.02,
            started_at=began + timedelta(microseconds=100 * i),
            input_tokens=100 + i % 100,
            output_tokens=20,
            cost_usd=Decimal(100 + i % 100) / 10**7,
            price_source="bench",
        )
        for i in range(n)
    ]


def driver_executions(calls: list[Call]) -> float:
    """Statements the driver runs per batch of `BATCH` into a new store, each row of an
    ``executemany`` counted: how often the store worker gives up the GIL, at least (a row
    read back is one more)."""
    import sqlalchemy  # noqa: PLC0415  # only this figure needs the engine's events

    with tempfile.TemporaryDirectory() as folder:
        store = SqlStore.open(Path(folder) / "count.db")
        counted = [0]

        def count(*args: object) -> None:
            parameters, many = args[3], args[5]
            counted[0] += len(parameters) if many else 1  # type: ignore[arg-type]

        sqlalchemy.event.listen(store.engine, "before_cursor_execute", count)
        for offset in range(0, len(calls), BATCH):
            store.write(calls[offset : offset + BATCH], [])
        store.close()
    return counted[0] / (len(calls) / BATCH)


def idle_benchmark(folder: Path, calls: int, app: str) -> dict[str, float]:
    """The reference: the same store writes from a thread while the application thread waits."""
    batch = app_calls(calls, app)
    sink = StoreSink(SqlStore.open(folder / "idle.db"))
    times: dict[str, float] = {}

    def write() -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        for offset in range(0, calls, BATCH):
            sink.write_calls(batch[offset : offset + BATCH])
        times["elapsed"] = time.perf_counter() - started
        times["cpu"] = time.thread_time() - cpu

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    sink.close()
    return {"rate": calls / times["elapsed"], "cpu_us": 1e6 * times["cpu"] / calls}


# The spin loop stores SDK-shaped calls.
_SHAPE = {"sdk": "sdk", "record": "record", "spin": "sdk"}


def busy_main(
    seconds: float,
    app: str,
    runs: int,
    write: Path | None,
    writer: Literal["thread", "process"] = "thread",
) -> None:
    rows, best = [], 0.0
    reference = 0.0
    for run in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            busy = busy_benchmark(Path(folder), seconds, app, writer)
            idle = idle_benchmark(Path(folder), 20_000, _SHAPE[app])
        rate = busy["during"] / busy["elapsed"]
        best, reference = max(best, rate), max(reference, idle["rate"])
        accounted = busy["final"] + busy["dropped"] == busy["made"]
        rows.append(
            f"| {run + 1} | {busy['made'] / busy['elapsed']:,.0f} | {rate:,.0f} "
            f"| {busy['dropped']:,.0f} ({100 * busy['dropped'] / busy['made']:.1f}%) "
            f"| {'yes' if accounted else 'NO'} | {1e6 * busy['elapsed'] / max(busy['during'], 1):.0f} "
            f"| {busy['cpu_us']:.0f} | {busy['child_cpu_us']:.0f} "
            f"| {idle['rate']:,.0f} | {idle['cpu_us']:.0f} |"
        )
    loop = {
        "sdk": "aivitals.track + set_usage",
        "record": "Recorder.record of built calls",
        "spin": "a pure-Python spin recording nothing, while a thread writes 20,000 SDK-shaped "
        "calls through `StoreSink.write_calls`: the store's own share",
    }[app]
    text = "\n".join(
        [
            f"Machine: {machine_line()}. Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}.",
            f"Command: `python benchmarks/bench_store_ingest.py --busy --seconds {seconds:g} "
            f"--app {app} --runs {runs}"
            + (f" --writer {writer}`." if writer != "thread" else "`."),
            "",
            f"The application thread records in a tight loop ({loop}) for {seconds:g} s with "
            + (
                "the default SQLite store (`aivitals.configure(store=PATH)`) while the "
                f"recorder's worker writes its batches of up to {BATCH:,}. "
                if writer == "thread"
                else "the SQLite store written by a child process (`aivitals.configure("
                'store=PATH, store_writer="process")`): the recorder\'s worker sends its '
                f"batches of up to {BATCH:,} and waits for each commit. "
            )
            + "Stored counts the calls in the file when the loop "
            "ends; dropped is the recorder's count (its queue full); accounted: stored at "
            "shutdown plus dropped equals recorded. Reference, same run: the same store writes "
            f"(`StoreSink.write_calls`, 20,000 calls shaped as the loop's, in batches of {BATCH:,}) "
            "from a thread while the application thread waits. Driver executions: the statements "
            f"the store runs per batch of {BATCH:,} such calls, each row of an `executemany` "
            "counted; "
            "each gives the GIL up (CPython's sqlite3 releases it around every step), and while "
            "the application is busy each can wait for the interpreter's switch interval to "
            f"get it back: {driver_executions(app_calls(5000, _SHAPE[app])):.0f}.",
            "",
            "| run | recorded/s | busy: stored/s | dropped | accounted | busy: store worker "
            "wall µs a call | busy: store worker CPU µs a call | busy: writer process CPU µs "
            "a call | reference: idle app, stored/s | reference: CPU µs a call |",
            "| ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"- Store under a busy application, at least {BUSY_TARGET:,} calls/s: "
            f"{'met' if best >= BUSY_TARGET else 'not met'} ({math.floor(best):,} calls/s at best; "
            f"idle reference {reference:,.0f}).",
        ]
    )
    print(text)
    if write:
        name = f"store-busy-{app}" + ("" if writer == "thread" else f"-{writer}")
        write_section(write, name, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--write", type=Path, help="rewrite this file's bench:store block")
    parser.add_argument("--url", help="time SqlStore.write into this PostgreSQL database instead")
    parser.add_argument("--busy", action="store_true", help="the store under a busy application")
    parser.add_argument("--seconds", type=float, default=5.0, help="--busy: the loop's length")
    parser.add_argument(
        "--app", choices=("sdk", "record", "spin"), default="sdk", help="--busy: its loop"
    )
    parser.add_argument("--runs", type=int, default=2, help="--busy: runs, each with its reference")
    parser.add_argument(
        "--writer",
        choices=("thread", "process"),
        default="thread",
        help="--busy: where the store's writes run (aivitals.configure's store_writer)",
    )
    args = parser.parse_args()
    if args.busy:
        busy_main(args.seconds, args.app, args.runs, args.write, args.writer)
        return
    if args.url:
        rate = ingest_benchmark(args.url, args.calls, batch_size=args.batch)
        print(
            f"Machine: {machine_line()}. Python {platform.python_version()}.\n"
            f"{args.calls:,} calls into PostgreSQL, batches of {args.batch:,}: "
            f"{rate:,.0f} calls/s (SqlStore.write, rollups included)"
        )
        return
    rows = []
    for batch_size in sorted({500, args.batch}):
        with tempfile.TemporaryDirectory() as folder:
            bare = bare_sqlite_benchmark(
                Path(folder) / "bare.db", args.calls, batch_size=batch_size
            )
            rate = ingest_benchmark(Path(folder) / "store.db", args.calls, batch_size=batch_size)
        rows.append(f"| {batch_size:,} | {rate:,.0f} | {bare:,.0f} | {rate / bare:.2f}x |")
    text = "\n".join(
        [
            f"Machine: {machine_line()}. Python {platform.python_version()}.",
            f"Command: `python benchmarks/bench_store_ingest.py --calls {args.calls} "
            f"--batch {args.batch}`.",
            "",
            f"{args.calls:,} calls into a new SQLite file, one transaction per batch. The store "
            "also checks ids and folds each batch into the minute, hour and day rollups; the "
            "reference only inserts the rows:",
            "",
            "| batch size | SqlStore.write, calls/s | reference: bare sqlite3 inserts, calls/s "
            "| store vs reference |",
            "| ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    print(text)
    if args.write:
        write_section(args.write, "store", text)


if __name__ == "__main__":
    main()
