"""``aivitals serve --workers 2`` against ``--workers 1``: requests per second on this machine.

Two paths, each saturated with ``wrk`` (C, one thread, so the load generator takes little of the
cores the server needs):

- ingest: ``POST /api/v1/calls`` with 10 calls a request, every id new (a Lua counter), each
  acknowledged only once committed to a fresh SQLite store;
- gateway: ``POST /v1/chat/completions`` (not streamed) through the gateway to ``aivitals
  mock-llm`` with no latency, so the proxy's own work is what is measured (the fake upstream
  runs on the same cores, as a colocated upstream would).

Rounds alternate 1 and 2 workers so a noisy moment on a shared machine does not decide a figure;
each figure is the median round, with the server's CPU time per request (the parent and its
workers) and the machine's load average, since 2 workers can only gain from a core nobody else
is using. Needs ``wrk`` (``apt-get install wrk``).

    python benchmarks/bench_workers.py [--rounds 3] [--seconds 10] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_gateway import MESSAGES, MODEL, Server, ensure_wrk, free_port, wrk
from report import machine_line, write_section

BATCH = 10
CALL = {
    "provider": "openai",
    "model": MODEL,
    "latency_ms": 250.0,
    "input_tokens": 1000,
    "output_tokens": 100,
    "started_at": "2026-11-03T11:50:00+00:00",
}


def ingest_script(directory: Path) -> Path:
    # Each request a new batch of ids: thread-local counter, prefix random per wrk thread.
    call = json.dumps(CALL, separators=(",", ":"))[1:-1]
    path = directory / "ingest.lua"
    path.write_text(
        f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 0
local prefix = string.format("%08x", math.random(0, 0x7fffffff))
request = function()
  local calls = {{}}
  for i = 1, {BATCH} do
    counter = counter + 1
    calls[i] = string.format('{{"id":"%s-0000-4000-8000-%012x",{call}}}', prefix, counter)
  end
  return wrk.format(nil, "/api/v1/calls", nil, '{{"calls":[' .. table.concat(calls, ",") .. ']}}')
end
{DONE}"""
    )
    return path


def chat_script(directory: Path) -> Path:
    body = json.dumps({"model": MODEL, "messages": MESSAGES}, separators=(",", ":"))
    path = directory / "chat.lua"
    path.write_text(
        f"""wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-0000"
wrk.body = [==[{body}]==]
{DONE}"""
    )
    return path


DONE = """done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, "
    .. "\\"errors\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def start_serve(aivitals: str, workers: int, work: Path, upstream: str) -> Server:
    folder = Path(tempfile.mkdtemp(dir=work, prefix=f"w{workers}-"))
    server = Server(
        name=f"serve --workers {workers}",
        argv=[
            aivitals,
            "serve",
            "--port",
            "0",
            "--workers",
            str(workers),
            "--db",
            str(folder / "aivitals.db"),
            "--upstream",
            upstream,
        ],
        port=0,
        ready_path="/readyz",
        log=folder / "serve.log",
    )
    server.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for line in server.tail(50).splitlines():
            if "listening on" in line:
                server.port = int(line.rsplit(":", 1)[-1])
                return server
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise SystemExit(f"serve exited:\n{server.tail()}")
        time.sleep(0.1)
    raise SystemExit(f"serve not listening after 180 s:\n{server.tail()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--aivitals", default=str(Path(sys.executable).with_name("aivitals")))
    parser.add_argument("--write", type=Path, help="rewrite this file's bench:workers block")
    args = parser.parse_args()
    binary = ensure_wrk()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    scripts = {"ingest": ingest_script(work), "gateway": chat_script(work)}
    upstream_port = free_port()
    mock = Server(
        name="mock-llm",
        argv=[
            args.aivitals,
            "mock-llm",
            "--port",
            str(upstream_port),
            "--time-scale",
            "0",
            "--latency-sigma",
            "0",
            "--seed",
            "1",
        ],
        port=upstream_port,
        ready_path="/v1/models",
        log=work / "mock.log",
    )
    mock.start()
    mock.wait_ready()
    rps: dict[tuple[str, int], list[float]] = {}
    p99: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    try:
        for round_ in range(args.rounds):
            order = (1, 2) if round_ % 2 == 0 else (2, 1)
            for workers in order:
                server = start_serve(args.aivitals, workers, work, f"{mock.url}/v1")
                try:
                    for path, script in scripts.items():
                        wrk(binary, server.url, script, args.connections, 2)  # warm-up
                        before = server.cpu()  # the parent and its workers
                        result = wrk(binary, server.url, script, args.connections, args.seconds)
                        spent = server.cpu() - before
                        cpu.setdefault((path, workers), []).append(
                            spent / result["requests"] * 1000
                        )
                        if result["errors"]:
                            raise SystemExit(f"{path}: {result['errors']:.0f} errors")
                        rps.setdefault((path, workers), []).append(result["rps"])
                        p99.setdefault((path, workers), []).append(result["p99_us"] / 1000)
                        print(
                            f"round {round_ + 1} {path} workers={workers}: "
                            f"{result['rps']:.0f} req/s, p99 {result['p99_us'] / 1000:.1f} ms",
                            file=sys.stderr,
                        )
                finally:
                    server.stop()
    finally:
        mock.stop()
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"`python benchmarks/bench_workers.py --rounds {args.rounds} --seconds "
        f"{args.seconds:g}` ({args.connections} connections, wrk); {machine_line()}; median of "
        f"{args.rounds} alternating rounds; 1-minute load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (other work on the machine takes cores from both).",
        "",
        "| path | workers | requests/s | p99 ms | server CPU ms/request | vs 1 worker |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for path in scripts:
        base = statistics.median(rps[(path, 1)])
        for workers in (1, 2):
            value = statistics.median(rps[(path, workers)])
            lines.append(
                f"| {path} | {workers} | {value:,.0f} | "
                f"{statistics.median(p99[(path, workers)]):.1f} | "
                f"{statistics.median(cpu[(path, workers)]):.2f} | {value / base:.2f}x |"
            )
    text = "\n".join(lines)
    print(text)
    if args.write is not None:
        write_section(args.write, "workers", text)


if __name__ == "__main__":
    main()
