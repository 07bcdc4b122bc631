"""The shared state's cost: Redis round trips, and the time Redis adds to an admitted request.

Starts its own redis-server (by PID, a free 127.0.0.1 port, no persistence), then, on one event
loop, times each admission step as the gateway awaits it, in memory (`RateLimiter`,
`BudgetLedger`, `ResponseCache`) and shared (`aivitals.shared`), one request at a time (latency)
and ``--concurrency`` at once (throughput): a PING (the bare round trip), the limits script for
a request under three limits (key, user, team; requests and tokens), the budget reserve script
for two budgets (user and team) with its release, and a cache hit. "Added per request" is an
admitted request that passes all three, shared minus in memory. Median of ``--runs`` runs of
``--requests`` each, after a warm-up.

    python benchmarks/bench_redis.py --requests 2000 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' redis-server

from tests.support.redis_server import RedisServer

from aivitals.gateway.budgets import Budget, BudgetLedger, Hold
from aivitals.gateway.cache import CachedAnswer, ResponseCache, cache_key
from aivitals.gateway.limits import Limit, RateLimiter
from aivitals.shared.budgets import SharedBudgetLedger
from aivitals.shared.cache import SharedResponseCache
from aivitals.shared.limits import SharedRateLimiter
from aivitals.shared.link import RedisLink
from aivitals.shared.writer import Writer

LIMITS = [
    Limit("key", "k", requests_per_minute=10**9, tokens_per_minute=10**12),
    Limit("user", "u", requests_per_minute=10**9, tokens_per_minute=10**12),
    Limit("team", "t", requests_per_minute=10**9),
]
BUDGETS = [
    Budget(scope="user", period="day", usd=Decimal("1e9")),
    Budget(scope="team", period="day", usd=Decimal("1e9")),
]
ANSWER = CachedAnswer(
    chunks=(b'{"choices": [{"message": {"content": "' + b"x" * 600 + b'"}}]}',),
    media_type="application/json",
    stream=False,
    cost_usd=Decimal("0.0004"),
)
KEY = cache_key("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})

Step = Callable[[], Awaitable[object]]


async def timed(step: Step, requests: int, concurrency: int) -> float:
    """Seconds per request over ``requests`` of ``step``, ``concurrency`` at a time."""
    started = time.perf_counter()
    if concurrency == 1:
        for _ in range(requests):
            await step()
    else:
        for _ in range(requests // concurrency):
            await asyncio.gather(*(step() for _ in range(concurrency)))
    return (time.perf_counter() - started) / requests


async def measure(url: str, requests: int, runs: int, concurrency: int) -> list[list[str]]:
    link = RedisLink(url, connect_timeout_s=1.0, socket_timeout_s=1.0)
    writer = Writer(link)
    writer.start()
    shared_limits = SharedRateLimiter(link, writer)
    shared_ledger = SharedBudgetLedger(BUDGETS, link, writer)
    shared_cache = SharedResponseCache(link, writer)
    shared_cache.put(KEY, ANSWER)
    writer.flush()
    local_limits, local_ledger, local_cache = RateLimiter(), BudgetLedger(BUDGETS), ResponseCache()
    local_cache.put(KEY, ANSWER)

    def reserve(ledger: BudgetLedger) -> Step:
        async def step() -> None:
            held = await ledger.reserve_async(Decimal("0.001"), user="u", team="t")
            if not isinstance(held, Hold):
                raise RuntimeError(f"refused: {held.message}")
            held.release()

        return step

    def admitted(limiter: RateLimiter, ledger: BudgetLedger, cache: ResponseCache) -> Step:
        async def step() -> None:
            await limiter.admit_async(LIMITS)
            await reserve(ledger)()
            await cache.get_async(KEY)

        return step

    async def ping() -> object:
        return await link.async_client().ping()

    steps: list[tuple[str, Step | None, Step]] = [
        ("round trip (PING)", None, ping),
        (
            "limits: 3 limits, 1 script",
            lambda: local_limits.admit_async(LIMITS),
            lambda: shared_limits.admit_async(LIMITS),
        ),
        ("budgets: reserve 2 + release", reserve(local_ledger), reserve(shared_ledger)),
        ("cache: hit", lambda: local_cache.get_async(KEY), lambda: shared_cache.get_async(KEY)),
        (
            "admitted request (all three)",
            admitted(local_limits, local_ledger, local_cache),
            admitted(shared_limits, shared_ledger, shared_cache),
        ),
    ]
    rows = []
    for name, local, shared in steps:
        figures: list[tuple[float, float] | None] = []
        for step in (local, shared):
            if step is None:
                figures.append(None)
                continue
            await timed(step, max(50, requests // 10), 1)  # warm-up (scripts loaded)
            one = statistics.median([await timed(step, requests, 1) for _ in range(runs)])
            many = statistics.median(
                [await timed(step, requests, concurrency) for _ in range(runs)]
            )
            figures.append((one, many))
        local_fig, shared_fig = figures
        assert shared_fig is not None
        added = shared_fig[0] - (local_fig[0] if local_fig else 0.0)
        rows.append(
            [
                name,
                f"{local_fig[0] * 1e6:.1f}" if local_fig else "-",
                f"{shared_fig[0] * 1e6:.1f}",
                f"{added * 1e6:.1f}",
                f"{1 / shared_fig[1]:,.0f}",
            ]
        )
    writer.close()
    await link.aclose()
    link.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian package redis-server)")
    with tempfile.TemporaryDirectory() as workdir, RedisServer(binary, Path(workdir)) as server:
        version = (
            subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
            .stdout.split()[2]
            .removeprefix("v=")
        )
        rows = asyncio.run(measure(server.url, args.requests, args.runs, args.concurrency))
    header = ["step", "in memory µs", "Redis µs", "added µs", f"Redis per s at {args.concurrency}"]
    print(f"redis-server {version} on 127.0.0.1, one event loop, median of {args.runs} runs")
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
