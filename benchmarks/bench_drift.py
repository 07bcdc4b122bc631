"""Drift: how long ``aivitals drift`` takes over 1M and 10M stored calls, and how often a
stationary workload is flagged (the false-alarm rate) over many seeded runs.

Timing: `Queries.drift` over the stores `bench_queries.populate` builds (30 days, 4 models; kept
and reused in ``--dir``), the last hour (ending a few seconds after the last call, so both edges
cut minutes) against the same hour of the 7 days before, for all calls and by model, and against
a pinned 14 days; median of ``--runs`` after a warm-up.

False alarms: ``--runs-stationary`` seeded stationary histories (tests/support/drift_history: 2
models, 240 calls per model per hour, written through `SqlStore`; of each of the 8 days only the
hour the drift compares, which is all it reads), each asked for drift by model; a run is a false alarm when any signal is moderate or significant. Also the largest
gap, over those runs, between the sketch-based PSI of latency and the PSI of the raw latencies
over the raw baseline's deciles.

    python benchmarks/bench_drift.py --calls 1000000,10000000 --dir .bench --runs-stationary 30 \\
        --write docs/benchmarks.md --write-false-alarms docs/drift.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' history writer

from tests.support.drift_history import history

from aivitals.query import Filters, Queries, Window
from aivitals.query.baseline import pinned, trailing
from aivitals.store.schema import calls
from aivitals.store.sql import SqlStore
from bench_queries import _stored_calls, populate
from report import machine_line, write_section

NOW = datetime(2026, 11, 10, 14, 0, tzinfo=UTC)


def _median_ms(step: Any, runs: int) -> float:
    step()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        step()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def time_drift(path: Path, runs: int) -> dict[str, Any]:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            count, last_ms = connection.execute(
                sa.select(sa.func.count(), sa.func.max(calls.c.started_ms))
            ).one()
        queries = Queries(engine)
        now = datetime.fromtimestamp(last_ms / 1000, UTC) + timedelta(seconds=17.345)
        hour = Window(now - timedelta(hours=1), now)
        fortnight = pinned("fortnight", Window(now - timedelta(days=21), now - timedelta(days=7)))
        found = queries.drift(hour, Filters(), ("model",))
        return {
            "calls": count,
            "all calls": _median_ms(lambda: queries.drift(hour, Filters(), ()), runs),
            "by model": _median_ms(lambda: queries.drift(hour, Filters(), ("model",)), runs),
            "pinned 14d, by model": _median_ms(
                lambda: queries.drift(hour, Filters(), ("model",), baseline=fortnight), runs
            ),
            "results": len(found.results),
            "drifted": len(found.drifted),
        }
    finally:
        engine.dispose()


def _raw_psi(base: np.ndarray[Any, Any], cur: np.ndarray[Any, Any]) -> float:
    edges = np.unique(np.quantile(base, np.arange(1, 10) / 10, method="inverted_cdf"))
    b = np.bincount(np.searchsorted(edges, base, side="left"), minlength=edges.size + 1)
    c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=edges.size + 1)
    keep = (b + c) > 0
    before, after = b[keep] + 0.5, c[keep] + 0.5
    p, q = before / before.sum(), after / after.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def false_alarms(runs: int) -> dict[str, Any]:
    hour = Window(NOW - timedelta(hours=1), NOW)
    reference = trailing(hour)
    flagged_runs = 0
    flagged = tested = 0
    gaps: list[float] = []
    for seed in range(1000, 1000 + runs):
        with tempfile.TemporaryDirectory() as folder:
            store = SqlStore.open(Path(folder) / "aivitals.db")
            try:
                drawn = history(store, now=NOW, seed=seed, last_hour_only=True)
                found = Queries(store.engine).drift(hour, Filters(), ("model",))
            finally:
                store.close()
        judged = [r for r in found.results if r.verdict != "not enough data"]
        before = len(gaps)
        tested += len(judged)
        flagged += sum(r.drifted for r in judged)
        flagged_runs += any(r.drifted for r in judged)
        for result in found.results:
            if result.signal != "latency_ms" or result.value is None:
                continue
            model = result.group["model"]

            def latencies(
                windows: tuple[Window, ...], model: str = str(model), drawn: Any = drawn
            ) -> Any:
                return np.asarray(
                    [
                        c.latency_ms
                        for c in drawn.calls
                        if c.model == model
                        and c.status == "ok"
                        and any(w.start <= c.started_at < w.end for w in windows)
                    ]
                )

            raw = _raw_psi(latencies(reference.windows), latencies((hour,)))
            gaps.append(abs(result.value - raw))
        print(
            f"seed {seed}: {sum(r.drifted for r in judged)} of {len(judged)} flagged; "
            f"latency PSI gaps {[round(g, 4) for g in gaps[before:]]}",
            flush=True,
        )
    return {
        "runs": runs,
        "flagged runs": flagged_runs,
        "tested": tested,
        "flagged": flagged,
        "largest psi gap": max(gaps) if gaps else float("nan"),
        "median psi gap": statistics.median(gaps) if gaps else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="1000000", help="comma-separated store sizes")
    parser.add_argument("--dir", default=".bench", help="where the stores are kept (and reused)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--runs-stationary", type=int, default=0)
    parser.add_argument("--write", type=Path, help="a Markdown file whose bench:drift to rewrite")
    parser.add_argument("--write-false-alarms", type=Path)
    args = parser.parse_args()
    lines = [
        f"Machine: {machine_line()}.",
        f"Command: `python benchmarks/bench_drift.py --calls {args.calls}`; median of "
        f"{args.runs} runs after a warm-up, in milliseconds.",
        "",
        "`Queries.drift` (what `aivitals drift` and `GET /api/v1/drift` run): the last hour "
        "(both edges cutting minutes) against the same hour of the 7 days before, every signal; "
        "and against a pinned 14 days. Stores from `bench_queries.populate` (30 days, 4 models).",
        "",
        "| stored calls | populate s | all calls | by model | pinned 14d, by model | results |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in (int(text) for text in args.calls.split(",") if text):
        path = Path(args.dir) / f"aivitals-bench-{size}-1.db"
        populated = "reused"
        if _stored_calls(path) != size:
            began = time.perf_counter()
            populate(path, size, 1)
            populated = f"{time.perf_counter() - began:,.0f}"
        f = time_drift(path, args.runs)
        print(size, populated, f, flush=True)
        lines.append(
            f"| {size:,} | {populated} | {f['all calls']:,.0f} | {f['by model']:,.0f} "
            f"| {f['pinned 14d, by model']:,.0f} | {f['results']} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write and args.calls:
        write_section(args.write, "drift", table)
    if args.runs_stationary:
        found = false_alarms(args.runs_stationary)
        text = "\n".join(
            [
                f"Machine: {machine_line()}.",
                f"Command: `python benchmarks/bench_drift.py --calls '' --runs-stationary "
                f"{found['runs']}`.",
                "",
                f"{found['runs']} seeded stationary histories (2 models, 240 calls per model "
                "per hour, written through the store; of each of 8 days only the hour compared), "
                "each the last hour against the same hour of the 7 days before, by model:",
                "",
                "| runs | runs with any drift flagged | signals judged | signals flagged "
                "| PSI sketch vs raw, median gap | largest gap |",
                "| ---: | ---: | ---: | ---: | ---: | ---: |",
                f"| {found['runs']} | {found['flagged runs']} "
                f"({found['flagged runs'] / found['runs']:.0%}) | {found['tested']:,} "
                f"| {found['flagged']} ({found['flagged'] / max(found['tested'], 1):.2%}) "
                f"| {found['median psi gap']:.4f} | {found['largest psi gap']:.4f} |",
            ]
        )
        print(text)
        if args.write_false_alarms:
            write_section(args.write_false_alarms, "drift-false-alarms", text)


if __name__ == "__main__":
    main()
