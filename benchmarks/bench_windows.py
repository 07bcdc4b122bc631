"""The live windows' memory over an hour at the soak's rate and key mix, in process.

``bench_soak.py`` sees the gateway's RSS grow while its live windows (`aivitals.windows`) fill
their hour of minutes. This feeds a `LiveWindows` an hour of calls (virtual clock, a tick a
second as the recorder's worker does) with ``bench_soak``'s mix: one model, 3 features x 2 teams
(6 keys), a third streamed, latencies log-normal around 3 ms (``--sigma``: 1.0 spreads them as a
busy machine does). Memory is ``tracemalloc``'s, after a full collection, each minute. The
reference in the same run is the same windows with every minute's sketches left live (how
minutes were kept before they froze). Also the CPU of the alerts' read pass (a read of 60 minutes
per key, one of 5 minutes, one of today), untraced, best of 5.

The target line applies issue 17's soak target to the windows alone: at most 1 MB of growth per
100,000 calls while the hour fills.

    python benchmarks/bench_windows.py [--rate 144] [--sigma 1.0] [--minutes 60] [--write PATH]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).parent))

from aivitals.model import Call
from aivitals.windows import LiveWindows, _Agg
from report import machine_line, write_section

T0 = 1_790_000_040.0  # on a minute
FEATURES = ["search", "support", "summary"]
TEAMS = ["alpha", "beta"]
TARGET_MB_PER_100K = 1.0


def mix() -> list[tuple[str, str, bool]]:
    """(feature, team, streamed) of the 18 requests bench_soak cycles through."""
    return [
        (FEATURES[m], TEAMS[n % 2], (n + m) % 3 == 0)
        for n in range(6)
        for m in range(len(FEATURES))
    ]


def feed(
    rate: int, sigma: float, minutes: int, *, traced: bool
) -> tuple[LiveWindows, list[int], float]:
    """Windows fed ``minutes`` at ``rate`` calls a second; bytes traced after each minute."""
    now = [T0]
    rng = random.Random(7)
    requests = mix()
    if traced:
        tracemalloc.start()
    gc.collect()
    base = tracemalloc.get_traced_memory()[0] if traced else 0
    windows = LiveWindows(clock=lambda: now[0])
    sizes: list[int] = []
    per_minute = rate * 60
    cost = Decimal("0.000015")
    for minute in range(minutes):
        start = T0 + minute * 60
        for n in range(per_minute):
            feature, team, streamed = requests[n % len(requests)]
            latency = 3.0 * rng.lognormvariate(0.0, sigma)
            now[0] = start + n / rate
            windows.on_call(
                Call(
                    provider="openai",
                    model="gpt-4o-mini",
                    latency_ms=latency,
                    started_at=datetime.fromtimestamp(now[0] - latency / 1000, UTC),
                    ttft_ms=latency * 0.3 if streamed else None,
                    input_tokens=20,
                    output_tokens=20,
                    cost_usd=cost,
                    feature=feature,
                    team=team,
                )
            )
            if n % rate == 0:
                windows.tick()
        now[0] = start + 60
        windows.tick()
        if traced:
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0] - base)
    if traced:
        tracemalloc.stop()
    return windows, sizes, now[0]


def read_pass_ms(windows: LiveWindows) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for key in windows.keys(minutes=60):
            windows.read(minutes=60, provider=key[0], model=key[1], feature=key[2], team=key[3])
        windows.read(minutes=5)
        windows.read(period="today")
        best = min(best, time.process_time() - start)
    return best * 1000


def measure(
    label: str, rate: int, sigma: float, minutes: int, patch: AbstractContextManager[object]
) -> tuple[str, float]:
    with patch:
        _, sizes, _ = feed(rate, sigma, minutes, traced=True)
        windows, _, _ = feed(rate, sigma, min(minutes, 60), traced=False)
        read_ms = read_pass_ms(windows)
    tail = min(10, len(sizes) - 1)
    per_minute = (sizes[-1] - sizes[-1 - tail]) / tail
    per_100k = per_minute / (rate * 60) * 100_000 / 1e6
    row = (
        f"| {label} | {sizes[-1] / 2**20:.2f} | {per_minute / 1024:,.1f} "
        f"| {per_minute / 6 / 1024:,.2f} | {per_100k:+.2f} | {read_ms:,.1f} |"
    )
    return row, per_100k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=144, help="calls a second (bench_soak's)")
    parser.add_argument("--sigma", type=float, default=1.0, help="latency spread (log-normal)")
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--write", type=Path, help="write the table into this markdown file")
    args = parser.parse_args()
    if args.minutes < 12:
        raise SystemExit("--minutes: at least 12 (the growth is fitted over the last 10)")
    shape = (args.rate, args.sigma, args.minutes)
    frozen, per_100k = measure("frozen (as shipped)", *shape, nullcontext())
    reference, _ = measure(
        "minutes left live (reference)", *shape, mock.patch.object(_Agg, "freeze", _keep_live)
    )
    command = "python benchmarks/bench_windows.py " + " ".join(sys.argv[1:])
    text = "\n".join(
        [
            f"Machine: {machine_line()}.",
            f"Command: `{command.strip()}`.",
            "",
            f"A LiveWindows fed {args.minutes} minutes at {args.rate} calls/s (6 keys, a third "
            f"streamed, latency log-normal sigma {args.sigma:g}), traced; growth per minute over "
            "the last 10; read pass: 6 per-key reads of 60 minutes, 5 minutes, today, CPU best of 5.",
            "",
            f"| windows | after {args.minutes} min MiB | growth KiB a minute | KiB a key and minute "
            "| MB per 100k calls | read pass ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            frozen,
            reference,
            "",
            f"- Live windows' growth: {per_100k:+.2f} MB per 100,000 calls (target at most "
            f"{TARGET_MB_PER_100K:g}: {'met' if per_100k <= TARGET_MB_PER_100K else 'not met'})",
        ]
    )
    print(text)
    if args.write:
        write_section(args.write, "soak-windows", text)


def _keep_live(self: _Agg) -> None:
    """`_Agg.freeze` for the reference: the minute's sketches stay as they were."""


if __name__ == "__main__":
    main()
