"""Ingest over HTTP with durable acknowledgement, against the earlier in-memory acknowledgement.

The server runs in its own process (this file, with ``--serve``), on uvicorn as `aivitals serve`
runs it, over a new SQLite store. Client threads in this process post prebuilt JSON batches to
``POST /api/v1/calls`` until every call is acknowledged, then wait until every call is in the
store. Two servers, in the same run:

- durable (today): a 202 is sent once the batch is committed; concurrent requests share a
  transaction (group commit);
- in-memory ack (the reference, the previous behaviour): a 202 is sent once the batch is in
  the recorder's queue; the store write comes later, and a crash loses what is queued.

"acked/s" is how fast the server answers; "stored/s" counts until the last call is committed,
which is what either design can sustain. Since wall-clock figures on a shared machine move with
its load, a second table gives the server's CPU time per call by stage, in process, on one
thread (best of ``--repeat``): reading a batch as the route does, building and pricing its calls,
and recording them durably (the store's commit included), HTTP and the thread pool left out.

    python benchmarks/bench_ingest_http.py [--calls 60000] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
import sqlalchemy

sys.path.insert(0, str(Path(__file__).parent))

from pydantic import TypeAdapter

from aivitals.attribution import Attribution
from aivitals.model import Call, Score
from aivitals.recorder import Recorder
from aivitals.sdk.runtime import Runtime
from aivitals.server.app import create_app
from aivitals.server.ingest import _read_calls
from aivitals.server.models import CallIn, CallsBody
from aivitals.server.serve import serve
from aivitals.serving import bind
from aivitals.sinks.prometheus import PrometheusSink
from aivitals.sinks.store import StoreSink
from aivitals.store import schema
from aivitals.store.sql import SqlStore
from aivitals.store.writer_process import ProcessWrittenStore
from bench_store_ingest import make_calls
from report import cpu_seconds, machine_line, write_section

QUEUE_LIMIT = 50_000  # as `aivitals serve`
TARGET_CALLS_S = 50_000  # issue 17: durable ingest, batches of 500, on the two cores
TARGET_BATCH = 500


class QueuedStore:
    """The store sink without `commit`: the recorder then acks from its queue (the old way)."""

    name = "store"

    def __init__(self, sink: StoreSink) -> None:
        self.sink = sink

    def write_calls(self, calls: Sequence[Call]) -> None:
        self.sink.write_calls(calls)

    def write_scores(self, scores: Sequence[Score]) -> None:
        self.sink.write_scores(scores)

    def close(self) -> None:
        self.sink.close()


def run_server(mode: str, port: int, db: Path) -> None:
    # "process": durable, the store written by a child process (`serve --store-writer process`).
    store = (ProcessWrittenStore if mode == "process" else SqlStore).open(db)
    sink = StoreSink(store)
    prometheus = PrometheusSink()
    recorder = Recorder(
        inline_sinks=[prometheus],
        batch_sinks=[QueuedStore(sink) if mode == "queued" else sink],
        queue_size=QUEUE_LIMIT,
    )
    runtime = Runtime(
        recorder=recorder, prometheus=prometheus, windows=None, defaults=Attribution()
    )
    app = create_app(runtime=runtime, store=store, queue_limit=QUEUE_LIMIT, close_on_shutdown=True)
    serve(app, bind("127.0.0.1", port), announce=lambda line: print(line, flush=True))


def bodies(calls: int, batch: int) -> list[bytes]:
    encoder = msgspec.json.Encoder()
    made = make_calls(calls)
    # Unpriced, as applications send them: the server prices.
    made = [msgspec.structs.replace(c, cost_usd=None, price_source=None) for c in made]
    return [encoder.encode({"calls": made[i : i + batch]}) for i in range(0, len(made), batch)]


def stored(db: Path) -> int:
    engine = sqlalchemy.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as connection:
            count = connection.scalar(
                sqlalchemy.select(sqlalchemy.func.count()).select_from(schema.calls)
            )
    finally:
        engine.dispose()
    return int(count or 0)


def measure(
    mode: str, payloads: list[bytes], calls: int, threads: int
) -> tuple[float, float, float]:
    """(acked calls/s, stored calls/s, the server's CPU µs per call) for one fresh server in
    ``mode``."""
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "aivitals.db"
        with bind("127.0.0.1", 0) as probe:
            port = probe.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", mode, "--port", str(port), "--db", str(db)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            assert "listening on" in server.stdout.readline()
            url = f"http://127.0.0.1:{port}/api/v1/calls"
            todo = list(reversed(payloads))
            lock = threading.Lock()
            refused = 0

            def client() -> None:
                nonlocal refused
                with httpx.Client(timeout=60, headers={"content-type": "application/json"}) as http:
                    while True:
                        with lock:
                            if not todo:
                                return
                            body = todo.pop()
                        while http.post(url, content=body).status_code != 202:
                            with lock:
                                refused += 1
                            time.sleep(0.05)

            started = time.perf_counter()
            cpu_before = cpu_seconds(server.pid)
            workers = [threading.Thread(target=client) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            acked = time.perf_counter() - started
            while stored(db) < calls:
                time.sleep(0.01)
            done = time.perf_counter() - started
            cpu_us = (cpu_seconds(server.pid) - cpu_before) / calls * 1e6
        finally:
            server.terminate()
            server.wait(60)
    return calls / acked, calls / done, cpu_us


def stages(payloads: list[bytes], calls: int, repeat: int) -> list[tuple[str, float]]:
    """CPU µs per call of each stage of ``POST /calls`` in process, one thread, best of
    ``repeat``, each round over a fresh store."""
    body_type: TypeAdapter[Any] = TypeAdapter(CallsBody)
    best: dict[str, float] = {}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as folder:
            store = SqlStore.open(Path(folder) / "aivitals.db")
            recorder = Recorder(
                inline_sinks=[PrometheusSink()],
                batch_sinks=[StoreSink(store)],
                queue_size=QUEUE_LIMIT,
            )
            spent = dict.fromkeys(("read and validate", "build and price", "record durably"), 0.0)
            for payload in payloads:
                began = time.thread_time()
                # As the route: its reader, then FastAPI's validation of what it returns.
                batch = body_type.validate_python(_read_calls(payload))
                read = time.thread_time()
                items: list[CallIn] = batch.calls
                built = [item.to_call(recorder.price_fields) for item in items]
                priced = time.thread_time()
                recorder.record_durably(built)
                spent["read and validate"] += read - began
                spent["build and price"] += priced - read
                spent["record durably"] += time.thread_time() - priced
            recorder.close()
            store.close()
        for stage, seconds in spent.items():
            best[stage] = min(best.get(stage, float("inf")), seconds / calls * 1e6)
    return [*best.items(), ("all", sum(best.values()))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=60_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the in-process stages")
    parser.add_argument("--write", type=Path, help="rewrite this file's bench:ingest-http block")
    parser.add_argument("--serve", choices=("durable", "process", "queued"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run_server(args.serve, args.port, args.db)
        return
    rows = []
    stored_at_target = 0.0
    for batch in (1, 100, 500):
        calls = min(args.calls, 6_000) if batch == 1 else args.calls
        payloads = bodies(calls, batch)
        durable = measure("durable", payloads, calls, args.threads)
        process = measure("process", payloads, calls, args.threads)
        queued = measure("queued", payloads, calls, args.threads)
        if batch == TARGET_BATCH:
            stored_at_target = max(durable[1], process[1])
            stage_rows = stages(payloads, calls, args.repeat)
        rows.append(
            f"| {batch} | {calls:,} | {durable[0]:,.0f} | {durable[1]:,.0f} | {process[1]:,.0f} "
            f"| {queued[0]:,.0f} | {queued[1]:,.0f} | {durable[1] / queued[1]:.2f}x "
            f"| {durable[2]:.0f} | {process[2]:.0f} |"
        )
    text = "\n".join(
        [
            f"Machine: {machine_line()}. Python {platform.python_version()}.",
            f"Command: `python benchmarks/bench_ingest_http.py --calls {args.calls} "
            f"--threads {args.threads}`.",
            "",
            f"{args.threads} client threads post batches to one server process over loopback "
            "(client and server share the two cores). Durable: the 202 waits for the commit, "
            "concurrent requests share one transaction. Reference: the earlier 202 from the "
            "recorder's in-memory queue (a kill -9 loses what is queued). Stored/s counts until "
            "the last call is in the store. Writer process: durable, the store written by a "
            "child process on the other core (`aivitals serve`'s default on two cores, its store "
            "writer `auto`). Server CPU: the "
            "durable server process's user and system time over the run, all threads (and the "
            "writer process), per call:",
            "",
            "| calls per request | calls | durable acked/s | durable stored/s "
            "| writer process: durable stored/s "
            "| in-memory ack acked/s | in-memory ack stored/s | durable vs in-memory, stored "
            "| durable: server CPU µs per call | writer process: server CPU µs per call |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"Where a call's server CPU goes, in process on one thread, batches of {TARGET_BATCH} "
            f"(best of {args.repeat}; HTTP, uvicorn and the thread pool left out):",
            "",
            "| stage | CPU µs per call |",
            "| --- | ---: |",
            *(f"| {stage} | {us:.1f} |" for stage, us in stage_rows),
            "",
            f"- Target, durable ingest at least {TARGET_CALLS_S:,} calls/s in batches of "
            f"{TARGET_BATCH}: **{'met' if stored_at_target >= TARGET_CALLS_S else 'not met'}** "
            f"({stored_at_target:,.0f} stored/s, the better of the two durable designs; "
            f"{TARGET_CALLS_S:,}/s on about a core of Python "
            f"needs about {1e6 / TARGET_CALLS_S:.0f} µs of CPU a call, the stages above take "
            f"{stage_rows[-1][1]:.0f}).",
        ]
    )
    print(text)
    if args.write:
        write_section(args.write, "ingest-http", text)


if __name__ == "__main__":
    main()
