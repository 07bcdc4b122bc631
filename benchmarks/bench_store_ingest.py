"""Calls per second into the embedded store (SQLite), in process.

The calls are built first (varied models, features, teams, errors, costs, tags; 30 ms apart, so
batches touch one or two minute buckets as live traffic does); only ``SqlStore.write`` is timed:
inserting calls, checking their ids, folding them into the minute, hour and day rollups, commit.

    python benchmarks/bench_store_ingest.py [--calls 200000] [--batch 1000] [--write docs/store.md]

``--url postgresql+psycopg://user@host:port/db`` times the same writes into that (empty)
PostgreSQL database instead, and prints its figure without touching any file.
"""

from __future__ import annotations

import argparse
import platform
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from aivitals.model import Call, ErrorType
from aivitals.store import schema
from aivitals.store.rows import call_row
from aivitals.store.sql import SqlStore
from report import machine_line, write_section

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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--write", type=Path, help="rewrite this file's bench:store block")
    parser.add_argument("--url", help="time SqlStore.write into this PostgreSQL database instead")
    args = parser.parse_args()
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
