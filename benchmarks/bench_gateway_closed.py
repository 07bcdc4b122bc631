"""The gateway's added latency and throughput in a closed loop (issue 17), against the upstream direct.

A closed loop: each of ``wrk``'s connections sends its next request when the answer to the last
one has arrived (``wrk -t1 -c1`` and ``-c16``), so at concurrency 1 the latency is the path's
cost with nothing queued, and at 16 the throughput is what the path carries on the cores it
shares with the client and the upstream. One fake upstream (``aivitals mock-llm`` answering at
once), and in the same run, each one process on the same two cores:

- direct: wrk to the mock;
- aivitals: ``aivitals serve --no-db --upstream`` (metrics only, as bench_gateway.py measures);
- aivitals + store: ``aivitals serve --db FILE --upstream`` (the default serve: every call
  recorded into SQLite by its writer process, the quality stage on).

Non-streaming and streamed chat (20 content chunks, then the finish event and ``[DONE]``).
Rounds are interleaved (the order of the paths rotates each round); a figure is the median
round, a ratio or an added latency is taken within each round against that round's direct run,
then the median. The server's CPU time per request (user + system, all its threads) is beside
each row: on a shared machine it moves less than wall-clock figures do.

    python benchmarks/bench_gateway_closed.py [--quick] [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_gateway import (
    BIN,
    KEY,
    ROOT,
    Server,
    check_path,
    ensure_wrk,
    free_port,
    lua_script,
    request_body,
    settle,
    wrk,
)
from report import machine_line, write_section

MODES = ("chat", "stream")
CONCURRENCY = (1, 16)
OVERHEAD_HEADER = "x-aivitals-overhead-ms"
# Issue 17: (mode, concurrency) -> the target, as ("added_p50_ms", at most) or ("ratio", at least).
TARGETS: dict[tuple[str, int], tuple[str, float]] = {
    ("chat", 1): ("added_p50_ms", 0.5),
    ("chat", 16): ("ratio", 0.3),
    ("stream", 1): ("added_p50_ms", 1.0),
    ("stream", 16): ("ratio", 0.35),
}


@dataclass
class Cell:
    runs: list[dict[str, float]] = field(default_factory=list)


def overhead_ms(base: str, mode: str) -> float | None:
    """The gateway's own account of one request (its ``X-Aivitals-Overhead-Ms``), if it gives one."""
    request = urllib.request.Request(
        base + "/v1/chat/completions",
        data=request_body(mode),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        value = answer.headers.get(OVERHEAD_HEADER)
        answer.read()
    return float(value) if value is not None else None


def measure(
    servers: dict[str, Server],
    wrk_binary: str,
    scripts: dict[str, Path],
    *,
    rounds: int,
    seconds: float,
    tokens: int,
) -> dict[tuple[str, int, str], Cell]:
    cells = {(m, c, p): Cell() for m in MODES for c in CONCURRENCY for p in servers}
    everything = list(servers.values())
    paths = list(servers)
    for mode in MODES:
        for path in paths:
            check_path(path, servers[path].url, mode, tokens)
            wrk(wrk_binary, servers[path].url + "/v1/chat/completions", scripts[mode], 16, 1)
        settle(everything)
    for round_ in range(rounds):
        order = paths[round_ % len(paths) :] + paths[: round_ % len(paths)]
        for mode in MODES:
            for connections in CONCURRENCY:
                for path in order:
                    print(
                        f"round {round_ + 1}/{rounds}: {mode}, c{connections}, {path} ...",
                        file=sys.stderr,
                    )
                    server = servers[path]
                    before = server.cpu()
                    got = wrk(
                        wrk_binary,
                        server.url + "/v1/chat/completions",
                        scripts[mode],
                        connections,
                        seconds,
                    )
                    got["cpu_ms"] = (server.cpu() - before) * 1000 / max(1, got["requests"])
                    cells[mode, connections, path].runs.append(got)
                    settle(everything)
    return cells


def tables(cells: dict[tuple[str, int, str], Cell], paths: list[str]) -> tuple[str, list[str]]:
    lines = [
        "| mode | connections | path | req/s | vs direct | p50 ms | p99 ms | added p50 | "
        "added p99 | server CPU ms/request | errors |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts: list[str] = []
    for mode in MODES:
        for connections in CONCURRENCY:
            direct = cells[mode, connections, "direct"].runs
            for path in paths:
                runs = cells[mode, connections, path].runs
                if not runs:
                    continue
                rps = statistics.median(r["rps"] for r in runs)
                p50 = statistics.median(r["p50_us"] for r in runs) / 1000
                p99 = statistics.median(r["p99_us"] for r in runs) / 1000
                cpu = statistics.median(r["cpu_ms"] for r in runs)
                errors = int(sum(r["errors"] for r in runs))
                versus = plus50 = plus99 = ""
                if path != "direct":
                    pairs = list(zip(runs, direct, strict=True))
                    ratio = statistics.median(a["rps"] / b["rps"] for a, b in pairs)
                    a50 = statistics.median(a["p50_us"] - b["p50_us"] for a, b in pairs) / 1000
                    a99 = statistics.median(a["p99_us"] - b["p99_us"] for a, b in pairs) / 1000
                    versus, plus50, plus99 = f"{ratio:.2f}x", f"{a50:+.2f}", f"{a99:+.2f}"
                    kind, bound = TARGETS[mode, connections]
                    if kind == "added_p50_ms":
                        met = a50 <= bound
                        verdicts.append(
                            f"{mode}, c{connections}, {path}: added p50 {a50:.2f} ms (target "
                            f"at most {bound:g} ms: {'met' if met else 'not met'})"
                        )
                    else:
                        met = ratio >= bound
                        verdicts.append(
                            f"{mode}, c{connections}, {path}: {ratio:.2f}x direct's throughput "
                            f"(target at least {bound:g}x: {'met' if met else 'not met'})"
                        )
                lines.append(
                    f"| {mode} | {connections} | {path} | {rps:,.0f} | {versus} | {p50:.2f} "
                    f"| {p99:.2f} | {plus50} | {plus99} | {cpu:.3f} | {errors} |"
                )
    return "\n".join(lines), verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run, to check it works")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick: 1)")
    parser.add_argument("--seconds", type=float, help="wrk's run per cell (default 5; quick: 2)")
    parser.add_argument("--tokens", type=int, default=20, help="completion tokens per answer")
    parser.add_argument("--no-store", action="store_true", help="leave out aivitals + store")
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout's src/ (say, `git worktree add` of the last commit): its serve "
        "--no-db runs as one more path, 'aivitals before', and its serve with the store as "
        "'aivitals + store before' (unless --no-store), interleaved with the others",
    )
    parser.add_argument("--aivitals", default=str(BIN / "aivitals"), help="the aivitals CLI")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    parser.add_argument("--write", type=Path, help="update the gateway-closed section of this file")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    wrk_binary = ensure_wrk()
    (ROOT / ".bench").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-closed-", dir=ROOT / ".bench"))
    up, gw, gb = free_port(), free_port(), free_port()
    mock_flags = [
        "--time-scale",
        "0",
        "--latency-sigma",
        "0",
        "--completion-tokens-min",
        str(args.tokens),
        "--completion-tokens-max",
        str(args.tokens),
        "--seed",
        "1",
    ]
    upstream = f"http://127.0.0.1:{up}/v1"
    servers = {
        "direct": Server(
            "aivitals mock-llm",
            [args.aivitals, "mock-llm", "--port", str(up), *mock_flags],
            up,
            "/mock/stats",
            workdir / "mock-llm.log",
        ),
        "aivitals": Server(
            "aivitals serve --no-db",
            [args.aivitals, "serve", "--no-db", "--port", str(gw), "--upstream", upstream],
            gw,
            "/healthz",
            workdir / "serve-no-db.log",
        ),
    }
    if args.before is not None:
        servers["aivitals before"] = Server(
            "aivitals serve --no-db (before)",
            [args.aivitals, "serve", "--no-db", "--port", str(gb), "--upstream", upstream],
            gb,
            "/healthz",
            workdir / "serve-before.log",
            env={"PYTHONPATH": str(args.before.resolve())},
        )
    if not args.no_store:

        def with_store(name: str, suffix: str, env: dict[str, str] | None = None) -> Server:
            port = free_port()
            return Server(
                name,
                [
                    *(args.aivitals, "serve", "--db", str(workdir / f"aivitals{suffix}.db")),
                    *("--port", str(port), "--upstream", upstream),
                ],
                port,
                "/healthz",
                workdir / f"serve-store{suffix}.log",
                env=env,
            )

        servers["aivitals + store"] = with_store("aivitals serve", "")
        if args.before is not None:
            servers["aivitals + store before"] = with_store(
                "aivitals serve (before)", "-before", {"PYTHONPATH": str(args.before.resolve())}
            )
    scripts = {mode: lua_script(workdir, mode) for mode in MODES}
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready()
        cells = measure(
            servers, wrk_binary, scripts, rounds=rounds, seconds=seconds, tokens=args.tokens
        )
        said = {mode: overhead_ms(servers["aivitals"].url, mode) for mode in MODES}
    finally:
        for server in reversed(servers.values()):
            server.stop()
    text, verdicts = tables(cells, list(servers))
    said_v = subprocess.run([wrk_binary, "-v"], check=False, capture_output=True, text=True)
    wrk_version = said_v.stdout.split("[")[0].strip() or "wrk"
    command = "python benchmarks/bench_gateway_closed.py" + (" --quick" if args.quick else "")
    if args.rounds:
        command += f" --rounds {args.rounds}"
    if args.seconds:
        command += f" --seconds {args.seconds:g}"
    header = [
        f"Machine: {machine_line()}. Python {platform.python_version()}; aivitals "
        f"{version('aivitals')}, uvicorn {version('uvicorn')}, {wrk_version}.",
        f"Command: `{command}`; {rounds} interleaved round{'s' if rounds > 1 else ''} of "
        f"{seconds:g} s per cell, {args.tokens} completion tokens per answer.",
        "",
        "```sh",
        f"aivitals mock-llm --port $UP {' '.join(mock_flags)}",
        "aivitals serve --no-db --port $GW --upstream http://127.0.0.1:$UP/v1",
        "aivitals serve --db $TMP/aivitals.db --port $GS --upstream http://127.0.0.1:$UP/v1",
        f"wrk -t1 -c$N -d{seconds:g}s --timeout 30s -s chat.lua "
        "http://127.0.0.1:$PORT/v1/chat/completions",
        "```",
        "",
        "Closed loop, client, gateway and upstream on the same cores; milliseconds; added is "
        "the path minus direct within each round:",
        "",
    ]
    body = "\n".join(header) + "\n" + text
    notes = [
        f"{mode}: one more request's `{OVERHEAD_HEADER}` after the run: {value:.3f} ms"
        for mode, value in said.items()
        if value is not None
    ]
    if notes:
        body += "\n\n" + "\n".join(f"- {n}" for n in notes)
    body += "\n\nTargets (issue 17):\n\n" + "\n".join(f"- {v}" for v in verdicts)
    print(body)
    if args.write:
        write_section(args.write, "gateway-closed", body)
    if args.keep_logs:
        print(f"logs in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
