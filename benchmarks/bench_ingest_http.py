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
which is what either design can sustain.

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

import httpx
import msgspec
import sqlalchemy

sys.path.insert(0, str(Path(__file__).parent))

from aivitals.attribution import Attribution
from aivitals.model import Call, Score
from aivitals.recorder import Recorder
from aivitals.sdk.runtime import Runtime
from aivitals.server.app import create_app
from aivitals.server.serve import serve
from aivitals.serving import bind
from aivitals.sinks.prometheus import PrometheusSink
from aivitals.sinks.store import StoreSink
from aivitals.store import schema
from aivitals.store.sql import SqlStore
from bench_store_ingest import make_calls
from report import cpu_seconds, machine_line, write_section

QUEUE_LIMIT = 50_000  # as `aivitals serve`


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
    store = SqlStore.open(db)
    sink = StoreSink(store)
    prometheus = PrometheusSink()
    recorder = Recorder(
        inline_sinks=[prometheus],
        batch_sinks=[sink if mode == "durable" else QueuedStore(sink)],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=60_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--write", type=Path, help="rewrite this file's bench:ingest-http block")
    parser.add_argument("--serve", choices=("durable", "queued"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run_server(args.serve, args.port, args.db)
        return
    rows = []
    for batch in (1, 100, 500):
        calls = min(args.calls, 6_000) if batch == 1 else args.calls
        payloads = bodies(calls, batch)
        durable = measure("durable", payloads, calls, args.threads)
        queued = measure("queued", payloads, calls, args.threads)
        rows.append(
            f"| {batch} | {calls:,} | {durable[0]:,.0f} | {durable[1]:,.0f} | {queued[0]:,.0f} "
            f"| {queued[1]:,.0f} | {durable[1] / queued[1]:.2f}x | {durable[2]:.0f} |"
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
            "the last call is in the store. Server CPU: the durable server process's user and "
            "system time over the run, all threads, per call:",
            "",
            "| calls per request | calls | durable acked/s | durable stored/s "
            "| in-memory ack acked/s | in-memory ack stored/s | durable vs in-memory, stored "
            "| durable: server CPU µs per call |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
        ]
    )
    print(text)
    if args.write:
        write_section(args.write, "ingest-http", text)


if __name__ == "__main__":
    main()
