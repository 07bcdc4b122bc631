"""An open-loop load generator: POST one body at a fixed rate and time each whole response.

Run by ``bench_gateway.py`` in its own process, so its work is not charged to the server it
measures. Requests leave on a fixed schedule whether or not earlier ones have answered (open
loop: a slow server gets no respite), over a pool of keep-alive HTTP/1.1 connections that grows
when every connection is busy. A request is timed from the moment its bytes are written to the
moment the last byte of the answer is read: for a stream, the chunk that ends it, after
``data: [DONE]``. The schedule's lag (how late each request left) is reported separately, so a
generator that fell behind shows it instead of hiding it.

    python benchmarks/fixed_rate.py --url http://127.0.0.1:8900/v1/chat/completions \\
        --body '{"model": "gpt-4o-mini", "messages": [...]}' --rate 50 --seconds 20 [--warmup 2]

Prints one JSON object: the latencies in microseconds, error and lag counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

try:
    import uvloop  # the event loop the servers use too, when installed
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


@dataclass
class Tally:
    latencies_us: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    max_lag_us: int = 0
    late: int = 0  # requests that left more than 1 ms after their scheduled time


class Pool:
    """Idle keep-alive connections to one host; opens a new one when none is idle."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.pop()
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port)

    def put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(conn)

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, the last bytes of the body, and whether the connection may be reused."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    keep = headers.get(b"connection") != b"close"
    tail = b""
    if b"content-length" in headers:
        tail = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # the end of the (empty) trailer
                break
            chunk = await reader.readexactly(size + 2)
            tail = (tail + chunk[:-2])[-64:]
    else:
        tail = (await reader.read())[-64:]
        keep = False
    return status, tail[-64:], keep


async def one(pool: Pool, request: bytes, stream: bool, tally: Tally, record: bool) -> None:
    try:
        conn = await pool.get()
        reader, writer = conn
        start = time.perf_counter_ns()
        writer.write(request)
        status, tail, keep = await read_response(reader)
        elapsed = time.perf_counter_ns() - start
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        if record:
            tally.errors.append(f"{type(exc).__name__}: {exc}")
        return
    if keep:
        pool.put(conn)
    else:
        writer.close()
    if not record:
        return
    if status != 200:
        tally.errors.append(f"HTTP {status}: {tail!r}")
    elif stream and b"[DONE]" not in tail:
        tally.errors.append(f"stream did not end with [DONE]: {tail!r}")
    else:
        tally.latencies_us.append(elapsed // 1000)


async def schedule(
    pool: Pool, request: bytes, *, stream: bool, rate: float, seconds: float, record: bool
) -> Tally:
    tally = Tally()
    count = int(rate * seconds)
    interval_ns = int(1e9 / rate)
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter_ns() + 1_000_000
    for i in range(count):
        due = start + i * interval_ns
        wait = due - time.perf_counter_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
        lag = time.perf_counter_ns() - due
        if record:
            tally.max_lag_us = max(tally.max_lag_us, lag // 1000)
            tally.late += lag > 1_000_000
        task = asyncio.create_task(one(pool, request, stream, tally, record))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    return tally


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    body = args.body.encode()
    stream = bool(json.loads(body).get("stream"))
    head = [
        f"POST {url.path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *args.header,
    ]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    pool = Pool(host, port)
    if args.warmup > 0:
        await schedule(
            pool, request, stream=stream, rate=args.rate, seconds=args.warmup, record=False
        )
    tally = await schedule(
        pool, request, stream=stream, rate=args.rate, seconds=args.seconds, record=True
    )
    await pool.close()
    return {
        "latencies_us": tally.latencies_us,
        "errors": len(tally.errors),
        "first_errors": tally.errors[:3],
        "late": tally.late,
        "max_lag_us": tally.max_lag_us,
        "connections": pool.opened,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="the JSON body to POST")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds at the same rate first")
    args = parser.parse_args()
    runner = uvloop.run if uvloop is not None else asyncio.run
    json.dump(runner(run(args)), sys.stdout)


if __name__ == "__main__":
    main()
