"""The gateway's added latency and throughput, against LiteLLM's proxy, over the same fake upstream.

One fake upstream (``aivitals mock-llm`` with no latency, so the proxies are what is measured),
and in front of it, in the same run: nothing (direct), ``aivitals serve --upstream``, and
LiteLLM's proxy. Each server is one process, on the same cores. For non-streaming and streaming
chat, every path gets:

- a fixed request rate (open loop, ``benchmarks/fixed_rate.py`` in its own process): p50 and p99
  of the whole response; added latency is the path's minus the direct path's, same run;
- saturation: ``wrk`` with a fixed number of connections: requests per second, p50 and p99, and
  the server's CPU time per request.

Rounds are interleaved (the order of the paths rotates each round), so one noisy moment on a
shared machine does not decide a figure: latencies pool every round's samples, throughputs are
the median round, and ratios are taken within each round, then the median.

LiteLLM is installed on first use into ``.bench/litellm-venv`` by ``benchmarks/setup_litellm.sh``
(about 2 minutes, 740 MB); ``wrk`` comes from Debian (installed if missing, when run as root).

    python benchmarks/bench_gateway.py [--quick] [--rounds 3] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from report import cpu_seconds, machine_line, write_section

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LITELLM_VENV = ROOT / ".bench" / "litellm-venv"
MODEL = "gpt-4o-mini"
KEY = "sk-bench-0000"  # LiteLLM's master key; the other paths pass it through, unused
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant for a customer-support team."},
    {"role": "user", "content": "Summarise in two sentences why my order has not shipped yet."},
]
PATHS = ("direct", "aivitals", "litellm")
MODES = ("chat", "stream")


@dataclass(frozen=True)
class Settings:
    rounds: int
    rate: float  # requests per second, non-streaming
    stream_rate: float
    rate_seconds: float
    rate_warmup: float
    connections: int
    sat_seconds: float
    prewarm_seconds: float
    tokens: int

    def rate_for(self, mode: str) -> float:
        return self.stream_rate if mode == "stream" else self.rate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process we start, wait for, measure and stop (by its PID)."""

    name: str
    argv: list[str]
    port: int
    ready_path: str
    log: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                cwd=self.cwd,
                start_new_session=True,  # Ctrl+C reaches us only; `stop` ends it by PID
            )

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.tail()}")

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def run(argv: Sequence[str], **options: object) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **options).stdout  # type: ignore[call-overload,no-any-return]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: apt-get install -y wrk (Debian), then run again")
    print("installing wrk (apt-get install -y wrk) ...", file=sys.stderr)
    install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
    if subprocess.run(install, check=False, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(install, check=True, capture_output=True)
    return shutil.which("wrk") or "/usr/bin/wrk"


def ensure_litellm() -> Path:
    litellm = LITELLM_VENV / "bin" / "litellm"
    if not litellm.exists():
        print("installing LiteLLM into .bench/litellm-venv (about 2 minutes) ...", file=sys.stderr)
    subprocess.run(["sh", str(ROOT / "benchmarks" / "setup_litellm.sh")], check=True)
    return litellm


def gateway_has_upstream(aivitals: str) -> bool:
    return "--upstream" in run([aivitals, "serve", "--help"], env={**os.environ, "COLUMNS": "200"})


def request_body(mode: str) -> bytes:
    body: dict[str, object] = {"model": MODEL, "messages": MESSAGES}
    if mode == "stream":
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def check_path(name: str, base: str, mode: str, tokens: int) -> None:
    """One request through the path, before any measuring: the answer must be whole and right."""
    request = urllib.request.Request(
        base + "/v1/chat/completions",
        data=request_body(mode),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read().decode()
    if mode == "stream":
        events = [line for line in text.splitlines() if line.startswith("data: ")]
        if events[-1] != "data: [DONE]" or len(events) < tokens:
            raise SystemExit(f"{name}: unexpected stream ({len(events)} events):\n{text[-500:]}")
    else:
        usage = json.loads(text).get("usage") or {}
        if usage.get("completion_tokens") != tokens:
            raise SystemExit(f"{name}: unexpected answer:\n{text[:500]}")


def lua_script(directory: Path, mode: str) -> Path:
    body = request_body(mode).decode()
    path = directory / f"{mode}.lua"
    path.write_text(
        f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {KEY}"
wrk.body = [==[{body}]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {{\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, "
    .. "\\"errors\\": %d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""
    )
    return path


def wrk(binary: str, url: str, script: Path, connections: int, seconds: float) -> dict[str, float]:
    out = run(
        [
            binary,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            url,
        ]
    )
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def fixed_rate(
    url: str, mode: str, rate: float, seconds: float, warmup: float
) -> dict[str, object]:
    out = run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "fixed_rate.py"),
            "--url",
            url,
            "--body",
            request_body(mode).decode(),
            "--header",
            f"Authorization: Bearer {KEY}",
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--warmup",
            str(warmup),
        ]
    )
    result: dict[str, object] = json.loads(out)
    return result


def settle(servers: Sequence[Server], timeout_s: float = 10.0) -> None:
    """Wait until every server is idle again (under 5% of a core over 200 ms)."""
    deadline = time.monotonic() + timeout_s
    before = sum(server.cpu() for server in servers)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = sum(server.cpu() for server in servers)
        if now - before < 0.01:
            return
        before = now


def percentile(ordered: Sequence[int], q: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    rank = max(1, -(-len(ordered) * q // 100))
    return float(ordered[int(rank) - 1])


@dataclass
class PathResult:
    latencies_us: list[int] = field(default_factory=list)
    rate_errors: int = 0
    late: int = 0
    max_lag_us: int = 0
    sat: list[dict[str, float]] = field(default_factory=list)


def measure(
    settings: Settings,
    targets: dict[str, Server],
    everything: Sequence[Server],
    wrk_binary: str,
    scripts: dict[str, Path],
) -> dict[str, dict[str, PathResult]]:
    paths = list(targets)
    results = {mode: {path: PathResult() for path in paths} for mode in MODES}
    for mode in MODES:
        for path in paths:
            check_path(path, targets[path].url, mode, settings.tokens)
            wrk(
                wrk_binary,
                targets[path].url + "/v1/chat/completions",
                scripts[mode],
                settings.connections,
                settings.prewarm_seconds,
            )
            settle(everything)
    for round_ in range(settings.rounds):
        order = paths[round_ % len(paths) :] + paths[: round_ % len(paths)]
        for mode in MODES:
            rate = settings.rate_for(mode)
            for path in order:
                print(
                    f"round {round_ + 1}/{settings.rounds}: {mode}, {path}, {rate:g} req/s ...",
                    file=sys.stderr,
                )
                got = fixed_rate(
                    targets[path].url + "/v1/chat/completions",
                    mode,
                    rate,
                    settings.rate_seconds,
                    settings.rate_warmup,
                )
                result = results[mode][path]
                result.latencies_us += got["latencies_us"]  # type: ignore[arg-type]
                result.rate_errors += int(got["errors"])  # type: ignore[call-overload]
                result.late += int(got["late"])  # type: ignore[call-overload]
                result.max_lag_us = max(result.max_lag_us, int(got["max_lag_us"]))  # type: ignore[call-overload]
                if got["errors"]:
                    print(f"  errors: {got['first_errors']}", file=sys.stderr)
                settle(everything)
            for path in order:
                print(
                    f"round {round_ + 1}/{settings.rounds}: {mode}, {path}, saturation ...",
                    file=sys.stderr,
                )
                server = targets[path]
                cpu_before = server.cpu()
                sat = wrk(
                    wrk_binary,
                    server.url + "/v1/chat/completions",
                    scripts[mode],
                    settings.connections,
                    settings.sat_seconds,
                )
                sat["cpu_ms_per_request"] = (
                    (server.cpu() - cpu_before) * 1000 / max(1, sat["requests"])
                )
                results[mode][path].sat.append(sat)
                settle(everything)
    return results


def ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def added(us: float) -> str:
    return f"{us / 1000:+.2f}"


def tables(settings: Settings, results: dict[str, dict[str, PathResult]]) -> tuple[str, list[str]]:
    """The markdown tables, and one line per target saying whether it is met."""
    lines: list[str] = []
    verdicts: list[str] = []
    pooled: dict[tuple[str, str], tuple[float, float]] = {}
    for mode in MODES:
        for path, result in results[mode].items():
            ordered = sorted(result.latencies_us)
            if ordered:
                pooled[mode, path] = (percentile(ordered, 50), percentile(ordered, 99))
    lines += [
        f"At a fixed rate ({settings.rate:g} req/s non-streaming, {settings.stream_rate:g} req/s "
        f"streaming; {settings.rate_seconds:g} s per path and round after "
        f"{settings.rate_warmup:g} s of warm-up, every round's samples pooled), milliseconds to "
        "the whole response; added is the path minus direct:",
        "",
        "| mode | path | requests | p50 | p99 | added p50 | added p99 | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode in MODES:
        base = pooled.get((mode, "direct"))
        for path, result in results[mode].items():
            if (mode, path) not in pooled:
                continue
            p50, p99 = pooled[mode, path]
            plus = (
                (added(p50 - base[0]), added(p99 - base[1]))
                if base and path != "direct"
                else ("", "")
            )
            lines.append(
                f"| {mode} | {path} | {len(result.latencies_us):,} | {ms(p50)} | {ms(p99)} "
                f"| {plus[0]} | {plus[1]} | {result.rate_errors} |"
            )
            if path == "aivitals" and base:
                a50, a99 = (p50 - base[0]) / 1000, (p99 - base[1]) / 1000
                verdicts.append(
                    f"{mode}: added p50 {a50:.2f} ms (target under 1 ms: "
                    f"{'met' if a50 < 1 else 'not met'}), added p99 {a99:.2f} ms (target under "
                    f"5 ms: {'met' if a99 < 5 else 'not met'})"
                )
    lines += [
        "",
        f"At saturation (`wrk`, {settings.connections} connections, one thread, "
        f"{settings.sat_seconds:g} s per path and round): the median round's requests per second, "
        "p50 and p99 in milliseconds, and the server's CPU time per request (user + system, "
        "the proxy's process only; for direct, the upstream's). Ratios are taken within each "
        "round, then the median:",
        "",
        "| mode | path | req/s | vs direct | p50 | p99 | added p50 | added p99 | CPU ms/request | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode in MODES:
        by_path = results[mode]
        direct = by_path.get("direct")
        for path, result in by_path.items():
            if not result.sat:
                continue
            rps = statistics.median(s["rps"] for s in result.sat)
            p50 = statistics.median(s["p50_us"] for s in result.sat)
            p99 = statistics.median(s["p99_us"] for s in result.sat)
            cpu = statistics.median(s["cpu_ms_per_request"] for s in result.sat)
            errors = int(sum(s["errors"] for s in result.sat))
            versus, plus50, plus99 = "", "", ""
            if direct and direct.sat and path != "direct":
                pairs = list(zip(result.sat, direct.sat, strict=True))
                versus = f"{statistics.median(a['rps'] / b['rps'] for a, b in pairs):.2f}x"
                plus50 = added(statistics.median(a["p50_us"] - b["p50_us"] for a, b in pairs))
                plus99 = added(statistics.median(a["p99_us"] - b["p99_us"] for a, b in pairs))
            lines.append(
                f"| {mode} | {path} | {rps:,.0f} | {versus} | {ms(p50)} | {ms(p99)} "
                f"| {plus50} | {plus99} | {cpu:.2f} | {errors} |"
            )
        ours, theirs = by_path.get("aivitals"), by_path.get("litellm")
        if ours and theirs and ours.sat and theirs.sat:
            ratio = statistics.median(
                a["rps"] / b["rps"] for a, b in zip(ours.sat, theirs.sat, strict=True)
            )
            verdicts.append(
                f"{mode}: throughput {ratio:.2f}x LiteLLM's on the same cores (target above 1x: "
                f"{'met' if ratio > 1 else 'not met'})"
            )
    lag = max(r.max_lag_us for m in results.values() for r in m.values())
    late = sum(r.late for m in results.values() for r in m.values())
    sent = sum(len(r.latencies_us) + r.rate_errors for m in results.values() for r in m.values())
    lines += [
        "",
        f"The fixed-rate generator kept its schedule: {late:,} of {sent:,} requests left more "
        f"than 1 ms late, the latest by {lag / 1000:.1f} ms.",
    ]
    return "\n".join(lines), verdicts


def litellm_config(upstream: str) -> str:
    return f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: {upstream}/v1
      api_key: sk-mock
litellm_settings:
  telemetry: false
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run, to check it works")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick: 1)")
    parser.add_argument("--rate", type=float, default=50.0, help="non-streaming req/s")
    parser.add_argument("--stream-rate", type=float, default=10.0, help="streaming req/s")
    parser.add_argument("--rate-seconds", type=float, help="per path and round (default 20)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--sat-seconds", type=float, help="per path and round (default 10)")
    parser.add_argument("--tokens", type=int, default=50, help="completion tokens per answer")
    parser.add_argument(
        "--paths", default=",".join(PATHS), help="comma-separated: direct,aivitals,litellm"
    )
    parser.add_argument("--aivitals", default=str(BIN / "aivitals"), help="the aivitals CLI")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    parser.add_argument("--write", type=Path, help="update the gateway section of this file")
    args = parser.parse_args()
    quick = args.quick
    settings = Settings(
        rounds=args.rounds or (1 if quick else 3),
        rate=args.rate,
        stream_rate=args.stream_rate,
        rate_seconds=args.rate_seconds or (3.0 if quick else 20.0),
        rate_warmup=1.0 if quick else 2.0,
        connections=args.connections,
        sat_seconds=args.sat_seconds or (2.0 if quick else 10.0),
        prewarm_seconds=1.0 if quick else 3.0,
        tokens=args.tokens,
    )
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown or "direct" not in paths:
        raise SystemExit(f"--paths: choose from {', '.join(PATHS)}, direct included")
    if "aivitals" in paths and not gateway_has_upstream(args.aivitals):
        print(
            "`aivitals serve` has no --upstream option yet: the aivitals path is skipped",
            file=sys.stderr,
        )
        paths.remove("aivitals")
    if args.write and paths != list(PATHS):
        raise SystemExit("--write needs all three paths in the run (direct, aivitals, litellm)")

    wrk_binary = ensure_wrk()
    litellm = ensure_litellm() if "litellm" in paths else None
    (ROOT / ".bench").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-", dir=ROOT / ".bench"))
    ports = {name: free_port() for name in ("upstream", "aivitals", "litellm")}
    upstream_url = f"http://127.0.0.1:{ports['upstream']}"
    mock_flags = [
        "--time-scale",
        "0",
        "--latency-sigma",
        "0",
        "--completion-tokens-min",
        str(settings.tokens),
        "--completion-tokens-max",
        str(settings.tokens),
        "--seed",
        "1",
    ]
    servers: dict[str, Server] = {
        "direct": Server(
            "aivitals mock-llm",
            [args.aivitals, "mock-llm", "--port", str(ports["upstream"]), *mock_flags],
            ports["upstream"],
            "/mock/stats",
            workdir / "mock-llm.log",
        )
    }
    if "aivitals" in paths:
        servers["aivitals"] = Server(
            "aivitals serve",
            [
                args.aivitals,
                "serve",
                "--no-db",
                "--port",
                str(ports["aivitals"]),
                "--upstream",
                upstream_url + "/v1",
            ],
            ports["aivitals"],
            "/healthz",
            workdir / "aivitals-serve.log",
        )
    if litellm is not None:
        (workdir / "litellm.yaml").write_text(litellm_config(upstream_url))
        servers["litellm"] = Server(
            "litellm",
            [
                str(litellm),
                "--config",
                "litellm.yaml",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["litellm"]),
            ],
            ports["litellm"],
            "/health/liveliness",
            workdir / "litellm.log",
            env={
                "LITELLM_MASTER_KEY": KEY,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": "ERROR",
            },
            cwd=workdir,
        )
    scripts = {mode: lua_script(workdir, mode) for mode in MODES}
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready()
        results = measure(settings, servers, list(servers.values()), wrk_binary, scripts)
    finally:
        for server in reversed(servers.values()):
            server.stop()
    text, verdicts = tables(settings, results)
    versions = [f"aivitals {version('aivitals')}", f"uvicorn {version('uvicorn')}"]
    if litellm is not None:
        versions.append(
            "litellm "
            + run(
                [
                    str(LITELLM_VENV / "bin" / "python"),
                    "-c",
                    "from importlib.metadata import version as v; "
                    "print(v('litellm'), 'with uvicorn', v('uvicorn'), end='')",
                ]
            )
        )
    wrk_version = subprocess.run(
        [wrk_binary, "-v"], check=False, capture_output=True, text=True
    ).stdout
    versions.append(wrk_version.split("[")[0].strip() or "wrk")
    command = "python benchmarks/bench_gateway.py" + (" --quick" if quick else "")
    header = [
        f"Machine: {machine_line()}. Python {platform.python_version()}; "
        + ", ".join(versions)
        + ".",
        f"Command: `{command}` (what `make bench` runs); {settings.rounds} interleaved "
        f"round{'s' if settings.rounds > 1 else ''}, {settings.tokens} completion tokens per "
        "answer (a stream: that many content events, then the finish event and `[DONE]`).",
        "",
        "What runs, each one process (LiteLLM with its default single worker; `aivitals serve` "
        "has one), every server and the load generators sharing the same cores; `$UP`, `$GW` "
        "and `$LL` are free ports picked at start:",
        "",
        "```sh",
        f"aivitals mock-llm --port $UP {' '.join(mock_flags)}",
        "aivitals serve --no-db --port $GW --upstream http://127.0.0.1:$UP/v1",
        f"LITELLM_MASTER_KEY={KEY} LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOG=ERROR \\",
        "  .bench/litellm-venv/bin/litellm --config litellm.yaml --host 127.0.0.1 --port $LL",
        f"wrk -t1 -c{settings.connections} -d{max(1, round(settings.sat_seconds))}s "
        "--timeout 30s -s chat.lua http://127.0.0.1:$PORT/v1/chat/completions",
        "python benchmarks/fixed_rate.py --url http://127.0.0.1:$PORT/v1/chat/completions "
        f"--body \"$BODY\" --header 'Authorization: Bearer {KEY}' --rate $RATE "
        f"--seconds {settings.rate_seconds:g} --warmup {settings.rate_warmup:g}",
        "```",
        "",
        "`litellm.yaml` (LiteLLM's `--config`; no database, `LITELLM_LOG=ERROR` as its "
        "production guide advises, which also turns its access log off, as aivitals' is):",
        "",
        "```yaml",
        litellm_config("http://127.0.0.1:$UP").rstrip(),
        "```",
        "",
        f'The body: `{request_body("chat").decode()}`, with `"stream":true` added for '
        "streaming; every path gets the same bytes and the same `Authorization` header (LiteLLM's "
        "master key; aivitals passes it through to the mock, which ignores it).",
        "",
    ]
    body = "\n".join(header) + "\n" + text
    if verdicts:
        body += "\n\nTargets (aivitals):\n\n" + "\n".join(f"- {v}" for v in verdicts)
    print(body)
    if args.write:
        write_section(args.write, "gateway", body)
    if args.keep_logs:
        print(f"logs in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
