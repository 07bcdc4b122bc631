"""The gateway's memory under a long soak: RSS against requests served, after warm-up.

A real ``aivitals serve`` in front of ``aivitals mock-llm`` (answering at once), driven closed
loop by ``wrk`` with a few connections. The load mixes whole and streamed chat over several
users, features and teams (the attribution headers, so per-key state shows); a third of the
requests ask for the response cache, which answers them where there is one (the ``users`` row).
``wrk`` runs in short segments, each reporting its exact request count; after each, the
gateway's and the mock's RSS are read from ``/proc/PID/status``. Warm-up is excluded, and the
slope of RSS against requests is fitted (``numpy.polyfit``, degree 1) in MB per 100,000
requests. The mock, a server of the same stack (uvicorn, Starlette) that keeps nothing per
request, is the reference in the same run. Rows:

- ``default``: ``serve --upstream`` as shipped: store on (a SQLite file), evaluators on;
- ``no-db``: the same with ``--no-db``;
- ``users``: ``--config`` with the same upstream, a rate limit for every user (never reached) and
  the response cache; every request names a user never seen before, so whatever the gateway
  keeps per user shows.

What grows, three ways, each through a harness in this file that runs ``aivitals serve`` in its
own process and answers SIGUSR1 (nothing in the product):

- ``--malloc``: glibc's bytes in use and pymalloc's blocks, fitted like RSS, and the RSS after
  ``malloc_trim(0)`` at the end: growth in use is real, growth of RSS alone is the allocator's;
- ``--objects``: every live Python object after a full collection, after warm-up and at the end:
  the containers whose length grew most, by owner, and the types whose count did;
- ``--tracemalloc``: the allocation sites whose live memory grew most (slow: tens of requests a
  second).

The RSS slopes of a probed run are the probe's as much as the gateway's (``--objects`` holds a
map of every object while it counts). ``--arena-max N`` runs the gateway with MALLOC_ARENA_MAX.

    python benchmarks/bench_soak.py [--quick] [--seconds 180] [--warmup-s 30]
        [--rows default,no-db,users] [--malloc | --objects | --tracemalloc] [--arena-max N]
        [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from types import CellType, FrameType
from typing import Any

import numpy
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))

from report import machine_line, process_tree, write_section

ROOT = Path(__file__).resolve().parent.parent
AIVITALS = str(Path(sys.executable).parent / "aivitals")
MODEL = "gpt-4o-mini"
TOKENS = 20
TARGET_MB_PER_100K = 1.0
USERS = [f"user-{n}" for n in range(6)]
FEATURES = ["search", "support", "summary"]
TEAMS = ["alpha", "beta"]
QUESTIONS = [
    "Summarise in two sentences why my order has not shipped yet.",
    "What is the refund policy for damaged items?",
    "Translate 'good morning' into French and Spanish.",
    "List three ways to speed up a slow SQL query.",
]


@dataclass(frozen=True)
class Settings:
    seconds: float  # per row
    warmup_s: float
    segment_s: int
    connections: int
    probe: str  # "", "tracemalloc" or "objects"
    arena_max: int | None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def tree_rss_mb(pid: int) -> float:
    """RSS of ``pid`` and its live descendants (serve's store writer process): a leak in the
    child is the gateway's too."""
    total = 0.0
    for at in process_tree(pid):
        try:
            total += rss_mb(at)
        except (OSError, RuntimeError):
            if at == pid:
                raise
            # a child that exited meanwhile
    return total


@dataclass
class Server:
    """A server process we start, wait for, sample and stop (by its PID)."""

    name: str
    argv: list[str]
    port: int
    ready_path: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
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
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def requests_mix() -> list[tuple[dict[str, str], str]]:
    """(headers, body) of every request the load cycles through, in order."""
    mix: list[tuple[dict[str, str], str]] = []
    for n, user in enumerate(USERS):
        for m, feature in enumerate(FEATURES):
            question = QUESTIONS[(n + m) % len(QUESTIONS)]
            stream = (n + m) % 3 == 0  # a third streamed
            body: dict[str, object] = {
                "model": MODEL,
                "messages": [{"role": "user", "content": question}],
            }
            if stream:
                body["stream"] = True
            headers = {
                "Content-Type": "application/json",
                "Authorization": "Bearer sk-soak-0000",
                "X-Aivitals-User": user,
                "X-Aivitals-Feature": feature,
                "X-Aivitals-Team": TEAMS[n % len(TEAMS)],
            }
            if m == 0:
                headers["X-Aivitals-Cache"] = "on"  # answered from the cache where there is one
            mix.append((headers, json.dumps(body, separators=(",", ":"))))
    return mix


def lua_script(directory: Path, *, fresh_users: bool) -> Path:
    """wrk's script: the mix in turn; with ``fresh_users``, every request a user never seen
    before (numbered on from the number wrk is given, so no two segments share one)."""
    entries = []
    for headers, body in requests_mix():
        pairs = ", ".join(f'["{name}"] = "{value}"' for name, value in headers.items())
        entries.append(f"  {{{{{pairs}}}, [==[{body}]==]}}")
    path = directory / ("fresh-users.lua" if fresh_users else "soak.lua")
    path.write_text(
        "local mix = {\n"
        + ",\n".join(entries)
        + f"\n}}\nlocal fresh = {'true' if fresh_users else 'false'}\n"
        + """local counter = 0
local base = 0
init = function(args)
  base = tonumber(args[1] or "0")
end
request = function()
  counter = counter + 1
  local entry = mix[(counter % #mix) + 1]
  local headers = {}
  for name, value in pairs(entry[1]) do headers[name] = value end
  if fresh then headers["X-Aivitals-User"] = "fresh-" .. (base + counter) end
  return wrk.format("POST", "/v1/chat/completions", headers, entry[2])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\": %d, \\"duration_us\\": %d, \\"errors\\": %d, \\"status\\": %d}\\n",
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, e.status))
end
"""
    )
    return path


def wrk_segment(
    url: str, script: Path, connections: int, seconds: int, first_user: int
) -> dict[str, int]:
    out = subprocess.run(
        [
            shutil.which("wrk") or "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            url + "/v1/chat/completions",
            "--",
            str(first_user),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result: dict[str, int] = json.loads(line.removeprefix("RESULT "))
    return result


def users_config(upstream: str) -> str:
    """The ``users`` row: a rate limit for every user (never reached) and the response cache,
    which the load asks for on a third of its requests (``X-Aivitals-Cache: on``)."""
    return f"""[[upstreams]]
name = "mock"
base_url = "{upstream}/v1"

[limits.per_user]
requests_per_minute = 1000000
tokens_per_minute = 1000000000

[cache]
routes = []
"""


@dataclass
class Sample:
    seconds: float
    requests: int
    gateway_mb: float
    mock_mb: float
    mock_requests: int
    in_use_mb: float | None = None  # --malloc: what malloc has handed out and not had back
    blocks: int | None = None  # --malloc: pymalloc's blocks in use (Python's small objects)
    pymalloc_used_mb: float | None = None  # --malloc: bytes in those blocks
    pymalloc_held_mb: float | None = None  # --malloc: pymalloc's arenas, used or not
    queued: int = 0  # calls and scores waiting in the recorder's queue for the store


@dataclass
class RowResult:
    name: str
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    growth: list[str] = field(default_factory=list)
    trimmed_mb: float | None = None  # --malloc: RSS once malloc_trim(0) gave free memory back
    dropped: int = 0  # calls and scores the recorder dropped, its queue full (at the end)


def backlog(gateway: Server) -> tuple[int, int]:
    """The gateway's recorder queue (items waiting for the store) and what it has dropped.

    A queue that grows is memory that grows, until it is full and drops: a store that falls
    behind the gateway looks like a leak, so each sample says how far behind it is.
    """
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            values[metric.name] = values.get(metric.name, 0.0) + metric.value
    dropped = values.get("aivitals_dropped_calls_total", 0) + values.get(
        "aivitals_dropped_scores_total", 0
    )
    return int(values.get("aivitals_queue_depth", 0)), int(dropped)


def mock_total(mock: Server) -> int:
    with urllib.request.urlopen(mock.url + "/mock/stats", timeout=5) as answer:
        return int(json.loads(answer.read())["total"])


def soak(row: str, settings: Settings, mock: Server, workdir: Path, script: Path) -> RowResult:
    port = free_port()
    argv = [AIVITALS, "serve", "--port", str(port)]
    if row == "users":
        config = workdir / "users.toml"
        config.write_text(users_config(mock.url))
        argv += ["--config", str(config), "--db", str(workdir / f"{row}.db")]
    else:
        argv += ["--upstream", mock.url + "/v1"]
        argv += ["--no-db"] if row == "no-db" else ["--db", str(workdir / f"{row}.db")]
    env: dict[str, str] = {}
    if settings.arena_max is not None:
        env["MALLOC_ARENA_MAX"] = str(settings.arena_max)
    snapshots = workdir / f"{row}-snapshots"
    if settings.probe:
        snapshots.mkdir()
        env["SOAK_SNAPSHOTS"] = str(snapshots)
        env["SOAK_PROBE"] = settings.probe
        argv = [sys.executable, __file__, "--harness", *argv[1:]]
    gateway = Server(f"serve ({row})", argv, port, "/healthz", workdir / f"{row}.log", env)
    gateway.start()
    result = RowResult(row)
    try:
        gateway.wait_ready()
        started = time.monotonic()
        total = segments = 0
        mock_base = mock_total(mock)
        if settings.probe == "tracemalloc":
            dump_snapshot(gateway, snapshots, "start")
        result.samples.append(Sample(0, 0, tree_rss_mb(gateway.pid), rss_mb(mock.pid), 0))
        warm_dumped = False
        while time.monotonic() - started < settings.seconds:
            got = wrk_segment(
                gateway.url, script, settings.connections, settings.segment_s, segments * 10**8
            )
            segments += 1
            total += got["requests"]
            result.errors += got["errors"]
            now = time.monotonic() - started
            sample = Sample(
                now, total, tree_rss_mb(gateway.pid), rss_mb(mock.pid), mock_total(mock) - mock_base
            )
            sample.queued, result.dropped = backlog(gateway)
            if settings.probe == "malloc":
                dump_snapshot(gateway, snapshots, f"s{segments}")
                heap = json.loads((snapshots / f"s{segments}.snap").read_text())
                sample.in_use_mb, sample.blocks = heap["in_use_mb"], heap["blocks"]
                sample.pymalloc_used_mb = heap["pymalloc_used_mb"]
                sample.pymalloc_held_mb = heap["pymalloc_held_mb"]
            result.samples.append(sample)
            print(
                f"{row}: {now:5.0f} s, {total:,} requests, gateway {sample.gateway_mb:.1f} MB, "
                f"mock {sample.mock_mb:.1f} MB, errors {result.errors}, "
                f"store queue {sample.queued:,}, dropped {result.dropped:,}",
                file=sys.stderr,
            )
            snapshot_due = settings.probe in ("tracemalloc", "objects") and not warm_dumped
            if snapshot_due and now >= settings.warmup_s:
                dump_snapshot(gateway, snapshots, "warm")
                warm_dumped = True
        if settings.probe == "malloc":
            dump_snapshot(gateway, snapshots, "trim")
            result.trimmed_mb = tree_rss_mb(gateway.pid)
        if settings.probe == "tracemalloc":
            dump_snapshot(gateway, snapshots, "end")
            result.growth = compare_snapshots(snapshots / "warm.snap", snapshots / "end.snap")
        elif settings.probe == "objects":
            dump_snapshot(gateway, snapshots, "end")
            result.growth = json.loads((snapshots / "end.snap").read_text())
    finally:
        gateway.stop()
    return result


def dump_snapshot(gateway: Server, directory: Path, name: str) -> None:
    """Ask the harness (SIGUSR1) for a snapshot, then wait for the file to appear."""
    (directory / "next").write_text(name)
    os.kill(gateway.pid, signal.SIGUSR1)
    target = directory / f"{name}.snap"
    deadline = time.monotonic() + 300
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.5)


def compare_snapshots(before: Path, after: Path, top: int = 15) -> list[str]:
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = new.filter_traces(ignore).compare_to(old.filter_traces(ignore), "traceback")
    lines = []
    for stat in stats[:top]:
        # Frames run oldest first: the allocating line, then the innermost of ours above it.
        leaf = stat.traceback[-1]
        ours = [frame for frame in stat.traceback if "aivitals" in frame.filename][-3:]
        frames = [
            f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}"
            for frame in [leaf, *reversed(ours)]
        ]
        lines.append(
            f"| {stat.size_diff / 1024:+,.1f} | {stat.count_diff:+,} | {stat.size / 1024:,.1f} "
            f"| {' < '.join(dict.fromkeys(frames))} |"
        )
    return lines


def fit(result: RowResult, warmup_s: float) -> tuple[float, float, int]:
    """Slopes (gateway, mock) in MB per 100,000 requests after warm-up, and requests fitted."""
    after = [s for s in result.samples if s.seconds >= warmup_s]
    if len(after) < 3:
        raise SystemExit(f"{result.name}: too few samples after warm-up ({len(after)})")
    x = numpy.array([s.requests for s in after], dtype=float) / 100_000
    gateway = float(numpy.polyfit(x, [s.gateway_mb for s in after], 1)[0])
    mock = float(numpy.polyfit(x, [s.mock_mb for s in after], 1)[0])
    return gateway, mock, after[-1].requests - after[0].requests


def tables(settings: Settings, results: list[RowResult], command: str) -> tuple[str, list[str]]:
    lines = [
        f"Machine: {machine_line()}. Python {platform.python_version()}.",
        f"Command: `{command}`.",
        "",
        f"`wrk`, {settings.connections} connections, closed loop, in {settings.segment_s} s "
        f"segments for {settings.seconds:g} s per row; RSS from /proc after each segment "
        "(the gateway's with its store writer process); the "
        f"first {settings.warmup_s:g} s are warm-up. Slopes fitted over the rest (numpy.polyfit), "
        "in MB per 100,000 gateway requests; the mock upstream's over the same requests is the "
        "reference. The load cycles through 18 requests: 6 users, 3 features, 2 teams, a third "
        "streamed (20 chunks), a third asking for the cache (only the `users` row has one; there "
        "every request is a user never seen before). Sent upstream: the share the mock answered. "
        "Store queue: the calls and scores waiting in the recorder's queue for the store, at "
        "most over the samples after warm-up, and what it dropped when full (from `/metrics`): "
        "a store that falls behind grows the queue, which shows as memory."
        + (f" MALLOC_ARENA_MAX={settings.arena_max}." if settings.arena_max else ""),
        "",
        "| row | requests | req/s | errors | sent upstream | store queue, most | dropped "
        "| gateway RSS after warm-up MB | at end MB | gateway MB per 100k "
        "| mock MB per 100k (reference) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for result in results:
        gateway, mock, fitted = fit(result, settings.warmup_s)
        warm = next(s for s in result.samples if s.seconds >= settings.warmup_s)
        last = result.samples[-1]
        rate = last.requests / max(last.seconds, 1e-9)
        lines.append(
            f"| {result.name} | {last.requests:,} | {rate:,.0f} | {result.errors} "
            f"| {last.mock_requests / max(last.requests, 1):.0%} "
            f"| {max(s.queued for s in result.samples if s.seconds >= settings.warmup_s):,} "
            f"| {result.dropped:,} | {warm.gateway_mb:.1f} | {last.gateway_mb:.1f} "
            f"| {gateway:+.2f} | {mock:+.2f} |"
        )
        verdicts.append(
            f"Gateway memory ({result.name}): {gateway:+.2f} MB per 100,000 requests over "
            f"{fitted:,} requests after warm-up (target at most {TARGET_MB_PER_100K:g}: "
            f"{'met' if gateway <= TARGET_MB_PER_100K else 'not met'}; mock {mock:+.2f})"
        )
    if settings.probe == "malloc":
        lines += [
            "",
            "Inside the gateway's process, fitted over the same samples, per 100,000 requests: "
            "what glibc's malloc has handed out and not had back (mallinfo2, every arena), "
            "pymalloc's blocks in use (Python's objects of up to 512 bytes), the bytes in them "
            "and the arenas pymalloc holds for them, used or not; and the RSS once "
            "`malloc_trim(0)` has given glibc's free memory back at the end:",
            "",
            "| row | RSS MB | malloc in use MB | pymalloc blocks | pymalloc in use MB "
            "| pymalloc held MB | RSS at end MB | after malloc_trim MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for result in results:
            after = [s for s in result.samples if s.seconds >= settings.warmup_s]
            x = numpy.array([s.requests for s in after], dtype=float) / 100_000
            rss = float(numpy.polyfit(x, [s.gateway_mb for s in after], 1)[0])
            used = float(numpy.polyfit(x, [s.in_use_mb or 0.0 for s in after], 1)[0])
            blocks = float(numpy.polyfit(x, [s.blocks or 0 for s in after], 1)[0])
            py_used = float(numpy.polyfit(x, [s.pymalloc_used_mb or 0.0 for s in after], 1)[0])
            py_held = float(numpy.polyfit(x, [s.pymalloc_held_mb or 0.0 for s in after], 1)[0])
            lines.append(
                f"| {result.name} | {rss:+.2f} | {used:+.2f} | {blocks:+,.0f} | {py_used:+.2f} "
                f"| {py_held:+.2f} | {after[-1].gateway_mb:.1f} | {result.trimmed_mb or 0:.1f} |"
            )
    for result in results:
        if result.growth and settings.probe == "objects":
            lines += [
                "",
                f"Growth between the warm-up and the end ({result.name}, every live Python "
                "object after a full collection: the containers whose length grew most, and "
                "the object types whose count did):",
                "",
                "| grown by | length or count at end | container (owner.attribute) or type |",
                "| ---: | ---: | --- |",
                *result.growth,
            ]
        elif result.growth:
            lines += [
                "",
                f"Growth between the warm-up and the end snapshots ({result.name}, tracemalloc, "
                "the gateway's own allocation sites):",
                "",
                "| KiB grown | blocks grown | KiB live | where |",
                "| ---: | ---: | ---: | --- |",
                *result.growth,
            ]
    lines += ["", *verdicts]
    return "\n".join(lines), verdicts


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap(*, trim: bool) -> dict[str, float]:
    """glibc's bytes in use (all arenas, mmapped blocks included) and pymalloc's blocks in use;
    with ``trim``, first hand free memory back to the system (``malloc_trim(0)``)."""
    libc = ctypes.CDLL("libc.so.6")
    if trim:
        libc.malloc_trim(0)
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return {
        "in_use_mb": (info.uordblks + info.hblkhd) / 2**20,
        "free_mb": info.fordblks / 2**20,
        "blocks": sys.getallocatedblocks(),
        **pymalloc_mb(),
    }


def pymalloc_mb() -> dict[str, float]:
    """pymalloc's bytes in allocated blocks and its arenas' total, from the report
    ``sys._debugmallocstats`` writes to file descriptor 2 (borrowed for a moment: a line another
    thread logs meanwhile goes into the report instead)."""
    with tempfile.TemporaryFile("w+") as report:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(report.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        report.seek(0)
        text = report.read()
    used = held = 0.0
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "# bytes in allocated blocks":
            used = int(value.strip().replace(",", "")) / 2**20
        elif name.strip() == "Total" and not held:
            held = int(value.strip().replace(",", "")) / 2**20
    return {"pymalloc_used_mb": used, "pymalloc_held_mb": held}


def census(name: str, kept: dict[str, Any]) -> list[str]:
    """Every container's length and every type's count; at "end", the rows that grew most.

    Containers holding only atomic values (a dict of str to float) are untracked by the
    collector, so the walk goes one step further: whatever a tracked object refers to."""
    gc.collect()
    tracked = gc.get_objects()
    seen: dict[int, object] = {id(o): o for o in tracked}
    for o in tracked:
        for child in gc.get_referents(o):
            if isinstance(child, dict | list | set | deque):
                seen.setdefault(id(child), child)
    types = Counter(repr(type(o)) for o in seen.values())
    lengths = {
        key: (type(o).__name__, len(o))
        for key, o in seen.items()
        if isinstance(o, dict | list | set | deque) and len(o) >= 16
    }
    ours = {id(seen), id(tracked), id(kept), id(lengths), id(types), *map(id, kept.values())}
    for key in ours:
        lengths.pop(key, None)
    if name != "end":
        kept["lengths"] = lengths
        kept["types"] = types
        return []
    before = kept.get("lengths", {})
    grown = sorted(
        (
            (length - before.get(key, (kind, 0))[1], length, key)
            for key, (kind, length) in lengths.items()
            if before.get(key, (kind, 0))[0] == kind
        ),
        reverse=True,
    )[:60]
    # Grouped by owner: the sketches of a new minute are dozens of containers of one kind,
    # which would hide a single one growing slower.
    by_owner: dict[str, list[int]] = {}
    for delta, length, key in grown:
        if delta > 0:
            slot = by_owner.setdefault(owner_of(seen[key]), [0, 0, 0])
            slot[0] += delta
            slot[1] += length
            slot[2] += 1
    rows = [
        f"| {delta:+,} | {length:,} | {owner}" + (f" (×{count})" if count > 1 else "") + " |"
        for owner, (delta, length, count) in sorted(by_owner.items(), key=lambda kv: -kv[1][0])
    ]
    old_types: Counter[str] = kept.get("types", Counter())
    rows += [
        f"| {n - old_types.get(t, 0):+,} | {n:,} | `{t}` |"
        for t, n in sorted(types.items(), key=lambda item: old_types.get(item[0], 0) - item[1])[:12]
        if n - old_types.get(t, 0) > 0
    ]
    return rows


def owner_of(container: object) -> str:
    """``Owner.attribute`` of a container held by an object's attribute, else its type."""
    for referrer in gc.get_referrers(container):
        if isinstance(referrer, dict):
            names = [k for k, v in referrer.items() if v is container]
            for owner in gc.get_referrers(referrer):
                if getattr(owner, "__dict__", None) is referrer and names:
                    return f"{type(owner).__module__}.{type(owner).__qualname__}.{names[0]}"
            if names and "__name__" in referrer:
                return f"{referrer['__name__']}.{names[0]} (module)"
        elif not isinstance(referrer, list | tuple | set | deque | FrameType | CellType):
            for attribute in dir(referrer):
                try:
                    if getattr(referrer, attribute, None) is container:
                        return (
                            f"{type(referrer).__module__}.{type(referrer).__qualname__}.{attribute}"
                        )
                except Exception:  # a property that fails is not the holder we look for
                    continue
    return type(container).__qualname__


def harness(argv: list[str]) -> None:
    """Run ``aivitals serve`` with a probe; SIGUSR1 takes a snapshot (benchmark only)."""
    directory = Path(os.environ["SOAK_SNAPSHOTS"])
    probe = os.environ["SOAK_PROBE"]
    kept: dict[str, Any] = {}
    wanted = threading.Event()

    def dumper() -> None:
        while True:
            wanted.wait()
            wanted.clear()
            name = (directory / "next").read_text().strip()
            if probe == "malloc":
                partial = directory / f"{name}.part"
                partial.write_text(json.dumps(heap(trim=name == "trim")))
                partial.rename(directory / f"{name}.snap")
                continue
            if probe == "objects":
                try:
                    rows = census(name, kept)
                except Exception as exc:  # reported in the table, not lost in the server's log
                    rows = [f"| | | census failed: {exc!r} |"]
                partial = directory / f"{name}.part"
                partial.write_text(json.dumps(rows))
                partial.rename(directory / f"{name}.snap")
                continue
            if name == "start":
                # Traced from the load's start, not the imports: start-up is ten times slower
                # traced, and what grows under load is what this is for.
                tracemalloc.start(12)
                (directory / "start.snap").write_text("")
                continue
            snapshot = tracemalloc.take_snapshot()
            partial = directory / f"{name}.part"
            snapshot.dump(str(partial))
            partial.rename(directory / f"{name}.snap")

    threading.Thread(target=dumper, daemon=True, name="soak-snapshots").start()
    signal.signal(signal.SIGUSR1, lambda *_: wanted.set())
    # The price catalog is imported at the first call; traced, its one huge module of literals
    # takes minutes, so it is imported before tracing starts.
    # Imported here, in the gateway's process only: the benchmark's own process stays small.
    import genai_prices.data  # noqa: F401, PLC0415

    from aivitals.cli import main  # noqa: PLC0415

    sys.argv = ["aivitals", *argv]
    main()


def main() -> None:
    # A SIGTERM runs the `finally`s, which stop the servers this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(sys.argv) > 1 and sys.argv[1] == "--harness":
        harness(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 40 s a row, to check it works")
    parser.add_argument("--seconds", type=float, default=180, help="soak length per row")
    parser.add_argument("--warmup-s", type=float, default=None, help="default: a sixth of a row")
    parser.add_argument("--segment-s", type=int, default=None)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rows", default="default,no-db,users")
    parser.add_argument("--tracemalloc", action="store_true", help="report what grows, traced")
    parser.add_argument(
        "--objects", action="store_true", help="report what grows, by counting live objects"
    )
    parser.add_argument(
        "--malloc",
        action="store_true",
        help="also fit malloc's bytes in use and pymalloc's blocks, and trim at the end",
    )
    parser.add_argument("--arena-max", type=int, default=None, help="MALLOC_ARENA_MAX for serve")
    parser.add_argument("--write", type=Path, help="write the tables into this markdown file")
    args = parser.parse_args()
    seconds = 30.0 if args.quick else args.seconds
    settings = Settings(
        seconds=seconds,
        warmup_s=args.warmup_s if args.warmup_s is not None else seconds / 6,
        segment_s=args.segment_s or (2 if args.quick else 5),
        connections=args.connections,
        probe="tracemalloc"
        if args.tracemalloc
        else "objects"
        if args.objects
        else "malloc"
        if args.malloc
        else "",
        arena_max=args.arena_max,
    )
    rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    unknown = set(rows) - {"default", "no-db", "users"}
    if unknown:
        raise SystemExit(f"unknown rows: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk (Debian), then run again")
    (ROOT / ".bench").mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-", dir=ROOT / ".bench"))
    scripts = {fresh: lua_script(workdir, fresh_users=fresh) for fresh in (False, True)}
    mock_port = free_port()
    mock = Server(
        "aivitals mock-llm",
        [
            AIVITALS,
            "mock-llm",
            "--port",
            str(mock_port),
            "--time-scale",
            "0",
            "--latency-sigma",
            "0",
            "--completion-tokens-min",
            str(TOKENS),
            "--completion-tokens-max",
            str(TOKENS),
            "--seed",
            "1",
        ],
        mock_port,
        "/mock/stats",
        workdir / "mock-llm.log",
    )
    results = []
    mock.start()
    try:
        mock.wait_ready()
        for row in rows:
            results.append(soak(row, settings, mock, workdir, scripts[row == "users"]))
    finally:
        mock.stop()
    command = "python benchmarks/bench_soak.py " + " ".join(sys.argv[1:])
    text, _ = tables(settings, results, command.strip())
    print(text)
    if args.write:
        write_section(args.write, "soak", text)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
