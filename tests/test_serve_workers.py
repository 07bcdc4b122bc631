"""``aivitals serve --workers N`` as real processes: one port, metrics that add up across the
workers, a graceful shutdown that stores every acknowledged call, restarts, and the refusal of
per-process limits without Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as text_families

from tests.support.alerts import receiving
from tests.support.gateway_processes import AIVITALS
from tests.support.realservers import poll
from tests.support.server_app import call_json

pytestmark = pytest.mark.slow

ROUTE = "/api/v1/calls"


class Workers:
    """``aivitals serve --port 0 --workers N`` with its log (stderr) in a file."""

    def __init__(self, workdir: Path, *args: str, workers: int = 2) -> None:
        self.workdir = workdir
        self.log = workdir / "serve.log"
        self.db = workdir / "aivitals.db"
        # The run directory (the workers' private metrics ports) goes under TMPDIR: here.
        self.tmp = workdir / "tmp"
        self.tmp.mkdir()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    AIVITALS,
                    "serve",
                    "--port",
                    "0",
                    "--db",
                    str(self.db),
                    "--workers",
                    str(workers),
                    *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TMPDIR": str(self.tmp)},
            )
        line = poll("the listening line", self._listening, describe=self.tail, timeout_s=120)
        self.url = line.rsplit(" ", 1)[-1]

    def _listening(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited {self.process.returncode}: {self.tail()}")
        for line in self.log.read_text(errors="replace").splitlines():
            if "listening on" in line:
                return line.strip()
        return None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def worker_pids(self) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]

    def private_ports(self) -> dict[str, int]:
        (run_dir,) = self.tmp.glob("aivitals-workers-*")
        return {
            path.stem.removeprefix("worker-"): int(path.read_text())
            for path in run_dir.glob("worker-*.port")
        }

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(120)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    server = Workers(tmp_path)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(30)


def post_one(url: str, call_id: str) -> int:
    # A connection of its own each time: the kernel hands each to whichever worker accepts.
    call = call_json(id=call_id, started_at=datetime.now(UTC).isoformat())
    with httpx.Client(timeout=60) as client:
        return client.post(url + ROUTE, json={"calls": [call]}).status_code


def send(
    url: str, ids: list[str], *, threads: int = 8, statuses: dict[str, int] | None = None
) -> dict[str, int]:
    """POST each call alone from ``threads`` threads; each id's status (0: no answer)."""
    statuses = {} if statuses is None else statuses

    def run(part: list[str]) -> None:
        for call_id in part:
            try:
                statuses[call_id] = post_one(url, call_id)
            except httpx.HTTPError:
                statuses[call_id] = 0  # not acknowledged

    pool = [threading.Thread(target=run, args=(ids[i::threads],)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return statuses


def ingest_count(families: Sequence[Metric], route: str = ROUTE) -> float:
    total = 0.0
    for family in families:
        for sample in family.samples:
            if sample.name == "aivitals_http_server_requests_total" and (
                sample.labels.get("route") == route
            ):
                total += sample.value
    return total


def stored_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM calls")]


def test_one_scrape_adds_up_every_worker(workers: Workers) -> None:
    sent = 120
    statuses = send(workers.url, [str(uuid.uuid4()) for _ in range(sent)])
    assert list(statuses.values()) == [202] * sent

    # Each worker alone, on its private port: both took some of the requests.
    alone = {}
    for index, port in workers.private_ports().items():
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        alone[index] = ingest_count(list(text_families(text)))
    assert sorted(alone) == ["0", "1"]
    assert all(count > 0 for count in alone.values()), alone

    # One scrape of the shared port shows the whole server, in either format.
    text = httpx.get(workers.url + "/metrics").text
    families = list(text_families(text))
    assert ingest_count(families) == sent
    openmetrics = httpx.get(
        workers.url + "/metrics", headers={"accept": "application/openmetrics-text"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    parsed = text_string_to_metric_families(openmetrics.text)  # type: ignore[no-untyped-call]
    assert ingest_count(list(parsed)) == sent
    # Histograms add up too: the duration's count is the requests'.
    counts = [
        s.value
        for f in families
        for s in f.samples
        if s.name == "aivitals_http_server_request_duration_seconds_count"
        and s.labels.get("route") == ROUTE
    ]
    assert sum(counts) == sent
    # Per-process series stay one per worker.
    memory = [
        s.labels["worker"]
        for f in families
        for s in f.samples
        if s.name == "process_resident_memory_bytes"
    ]
    assert sorted(memory) == ["0", "1"]

    assert workers.stop() == 0
    assert len(stored_ids(workers.db)) == sent
    assert "listening on" in workers.tail()
    assert workers.tail().count("listening on") == 1


def test_sigterm_mid_load_keeps_every_acknowledged_call(workers: Workers) -> None:
    ids = [str(uuid.uuid4()) for _ in range(400)]
    statuses: dict[str, int] = {}
    sender = threading.Thread(target=send, args=(workers.url, ids), kwargs={"statuses": statuses})
    sender.start()
    poll("some calls acknowledged", lambda: len(statuses) >= 40)
    workers.process.send_signal(signal.SIGTERM)
    sender.join()
    assert workers.process.wait(120) == 0, workers.tail()

    acknowledged = {call_id for call_id, status in statuses.items() if status == 202}
    assert acknowledged, "the load ended before any call was acknowledged"
    stored = stored_ids(workers.db)
    assert len(stored) == len(set(stored))  # once each
    assert acknowledged <= set(stored)
    assert workers.worker_pids() == []  # no worker outlives the parent


def test_a_worker_that_dies_is_restarted_and_the_exit_says_so(workers: Workers) -> None:
    first = workers.worker_pids()
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    poll("a worker in its place", lambda: len(set(workers.worker_pids()) - set(first)) == 1)
    poll("the restart logged", lambda: "starting another" in workers.tail())
    # The new worker serves: its private port answers.
    poll("two private ports again", lambda: len(workers.private_ports()) == 2)
    assert set(send(workers.url, [str(uuid.uuid4()) for _ in range(10)]).values()) == {202}
    # A death nobody asked for: what that worker held in memory may be lost, so status 1.
    assert workers.stop() == 1
    assert f"was killed by signal {int(signal.SIGKILL)}" in workers.tail()


def test_parent_killed_the_workers_stop_by_themselves(workers: Workers) -> None:
    pids = workers.worker_pids()
    workers.process.kill()
    workers.process.wait(30)

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() and _running(pid) for pid in pids)

    poll("the orphaned workers to stop", gone, timeout_s=120)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("[[budgets]]\neach = 'user'\nper = 'day'\nusd = 5\n", "budgets"),
        ("[limits.per_user]\nrequests_per_minute = 10\n", "rate limits"),
        ("[cache]\n", "the response cache"),
    ],
)
def test_per_process_state_without_redis_is_refused(
    tmp_path: Path, section: str, named: str
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        "[[upstreams]]\nname = 'up'\nbase_url = 'http://127.0.0.1:9/v1'\n\n" + section
    )
    done = subprocess.run(
        [AIVITALS, "serve", "--port", "0", "--no-db", "--workers", "2", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"--workers 2 with {named} needs Redis" in line


ALERT_RULES = """
interval: 1s
notifiers:
  - name: hook
    type: webhook
    url: {url}
rules:
  - name: ErrorsAbove
    signal: error_rate
    window: 15m
    op: ">"
    threshold: 0.25
    severity: critical
    for: 0s
  - name: LiveOnly
    signal: error_rate
    source: live
    window: 5m
    op: ">"
    threshold: 2
"""


def test_one_alert_engine_notifies_and_every_worker_shows_its_alerts(tmp_path: Path) -> None:
    with receiving() as hook:
        rules = tmp_path / "alerts.yaml"
        rules.write_text(ALERT_RULES.format(url=hook.url))
        server = Workers(tmp_path, "--alerts", str(rules))
        try:
            assert "LiveOnly read `source: live`" in server.tail()
            now = datetime.now(UTC).isoformat()
            failed = {"status": "error", "error_type": "rate_limit"}
            calls = [call_json(started_at=now, **(failed if i < 4 else {})) for i in range(10)]
            assert httpx.post(server.url + ROUTE, json={"calls": calls}).status_code == 202

            def phases() -> list[str]:
                with httpx.Client(timeout=30) as client:  # a new connection: any worker
                    alerts = client.get(server.url + "/api/v1/alerts").json()["alerts"]
                return [a["rule"] + ":" + a["phase"] for a in alerts]

            poll("the alert firing", lambda: phases() == ["ErrorsAbove:firing"])
            poll("the notification", lambda: len(hook.received) >= 1)
            # A follower adopts the leader's published state on its next cycle (an interval
            # later, more on a loaded machine): wait for that, then both answer alike.
            poll(
                "every worker showing it",
                lambda: all(phases() == ["ErrorsAbove:firing"] for _ in range(10)),
            )
            # Both workers answer, and both with the leader's alerts.
            answers = [phases() for _ in range(30)]
            assert answers == [["ErrorsAbove:firing"]] * 30
            assert _alert_routes_per_worker(server) == {"0": True, "1": True}
            assert len(hook.received) == 1  # one engine notified, once
        finally:
            assert server.stop() == 0, server.tail()


def _alert_routes_per_worker(server: Workers) -> dict[str, bool]:
    """Which workers answered GET /api/v1/alerts, from each one's own metrics."""
    answered = {}
    for index, port in server.private_ports().items():
        families = text_families(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        answered[index] = any(
            s.name == "aivitals_http_server_requests_total"
            and s.labels.get("route") == "/api/v1/alerts"
            and s.value > 0
            for f in families
            for s in f.samples
        )
    return answered


def test_a_restart_storm_stops_the_server(workers: Workers) -> None:
    seen = set(workers.worker_pids())
    victim = min(seen)
    kills = 0
    # Kill each replacement as soon as it appears: the sixth death within a minute ends it.
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        kills += 1
        found = poll("a replacement, or the end", lambda: _new_worker(workers, seen))
        if found == "ended":
            break
        victim = int(found)
        seen.add(victim)
    assert workers.process.wait(120) == 1
    assert kills == 6, workers.tail()
    assert "5 restarts within 60s already: stopping the server" in workers.tail()
    assert workers.tail().count("starting another") == 5


def _new_worker(workers: Workers, seen: set[int]) -> str | None:
    fresh = [pid for pid in workers.worker_pids() if pid not in seen]
    if fresh:
        return str(fresh[0])
    return "ended" if workers.process.poll() is not None else None
