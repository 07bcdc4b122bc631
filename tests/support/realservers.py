"""Real servers (Prometheus now; Alertmanager next) started by the tests that need them.

`scripts/install-test-servers` installs their Debian packages, and `make test` runs it before
pytest. Each server runs as its own process on a free 127.0.0.1 port with its files in a
directory of the test's, is polled until ready (never a fixed sleep) and stopped by its own PID.

No test here; test modules import from it.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest
import yaml

DEFAULT_TIMEOUT_S = 30.0
"""Generous on purpose: CI shares two cores with other jobs."""

_POLL_S = 0.1


def in_ci() -> bool:
    """Whether this is CI, where a missing server must fail the run rather than skip it."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def need(binary: str, *, package: str | None = None) -> str:
    """The path of ``binary``; without it, skip the test, or fail it under CI.

    A skip under CI would turn "the install step is broken" into a green run.
    """
    path = shutil.which(binary)
    if path is not None:
        return path
    package = package or binary
    reason = (
        f"{binary} is not installed (Debian package {package}); "
        f"run `sudo scripts/install-test-servers {package}` (make test does it when root)"
    )
    if in_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    # The port is free now but not reserved: ServerProcess.start retries if another process takes
    # it before the server binds it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def poll(
    what: str,
    attempt: Callable[[], Any],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    describe: Callable[[], str] | None = None,
) -> Any:
    """Calls ``attempt`` until it returns something truthy; raises after ``timeout_s``.

    ``describe`` adds the state at the deadline (the last query result, a log tail) to the error.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = attempt()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f"; {describe()}" if describe is not None else ""
            raise TimeoutError(f"{what}: not within {timeout_s:g} s{detail}")
        time.sleep(_POLL_S)


class ServerProcess:
    """One server binary in the background on a free port, its output in ``workdir``.

    Subclasses give the command line (`command`) and the readiness path (`ready_path`).
    """

    name = "server"
    ready_path = "/-/ready"
    start_attempts = 3
    keeps_port = False
    """Whether a start after the first comes back on the same port (a restart at the same URL)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"
        self.client = httpx.Client(timeout=10.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        keep_port = self.keeps_port and self.port != 0
        for attempt in range(1, self.start_attempts + 1):
            if not keep_port:
                self.port = free_port()
            with self.log_path.open("ab") as log:
                # The binary itself, not a shell: its PID is the one we stop.
                self.process = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
            try:
                poll(
                    f"{self.name} ready at {self.url}{self.ready_path}",
                    self._ready,
                    describe=lambda: f"its log ends:\n{self.log_tail()}",
                )
                return self
            except _Exited:
                # A first start can lose its free port to another process, a restart on the
                # same port can race a client's lingering socket: both retry.
                if attempt == self.start_attempts or "address already in use" not in (
                    self.log_tail().lower()
                ):
                    code = self._returncode()
                    self.stop()
                    raise RuntimeError(
                        f"{self.name} exited with code {code}; its log ends:\n{self.log_tail()}"
                    ) from None
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def _ready(self) -> bool:
        if self._returncode() is not None:
            raise _Exited
        try:
            return self.client.get(self.url + self.ready_path).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=DEFAULT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=DEFAULT_TIMEOUT_S)
        self.client.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


class _Exited(Exception):
    """The server process ended before it was ready."""


@dataclass(frozen=True)
class Sample:
    """One element of a PromQL instant query's answer."""

    labels: dict[str, str]
    value: float


class Prometheus(ServerProcess):
    """A real Prometheus scraping ``targets`` (``host:port``) every second.

    A context manager: ``with Prometheus(need("prometheus"), tmp_path, targets=[...]) as prom``,
    then ``prom.wait_until_scraped()`` and ``prom.wait_for(promql, predicate)``.
    """

    name = "prometheus"

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        targets: Sequence[str],
        job: str = "aivitals",
        metrics_path: str = "/metrics",
        scrape_interval: str = "1s",
        rule_files: Sequence[Path] = (),
        alertmanagers: Sequence[str] = (),
    ) -> None:
        super().__init__(binary, workdir)
        self.job = job
        self.config_path = workdir / "prometheus.yml"
        self.config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "rule_files": [str(path) for path in rule_files],
            # Present from the start even when empty (docs: shared/INFRA.md): adding it by a reload
            # later can drop the first notification.
            "alerting": {
                "alertmanagers": (
                    [{"static_configs": [{"targets": list(alertmanagers)}]}]
                    if alertmanagers
                    else []
                )
            },
            "scrape_configs": [
                {
                    "job_name": job,
                    "metrics_path": metrics_path,
                    "static_configs": [{"targets": list(targets)}],
                }
            ],
        }

    def command(self) -> list[str]:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--rules.alert.resend-delay=1s",
            "--log.level=warn",
        ]

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of a successful HTTP API answer (``/api/v1/...``)."""
        reply = self.client.get(f"{self.url}/api/v1/{path}", params=params)
        body = reply.json()
        if reply.status_code != 200 or body.get("status") != "success":
            raise PromQLError(f"GET /api/v1/{path} {params}: {reply.status_code} {body}")
        return body["data"]

    def query(self, promql: str, *, at: float | None = None) -> list[Sample]:
        """An instant query's answer (``at``: evaluation time in seconds since the epoch)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        kind, result = data["resultType"], data["result"]
        # Values are strings: "NaN", "+Inf" and "-Inf" included, all of which float() reads.
        if kind == "vector":
            return [Sample(item["metric"], float(item["value"][1])) for item in result]
        if kind == "scalar":
            return [Sample({}, float(result[1]))]
        raise PromQLError(f"{promql!r} answers a {kind}; ask for an instant vector or a scalar")

    def value(self, promql: str, *, at: float | None = None) -> float:
        """The single value ``promql`` answers (NaN when it answers nothing)."""
        samples = self.query(promql, at=at)
        if len(samples) > 1:
            raise PromQLError(f"{promql!r} answers {len(samples)} series, not one: {samples}")
        return samples[0].value if samples else math.nan

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[Sample]], bool],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[Sample]:
        """Polls ``promql`` until ``predicate`` holds for its answer; returns that answer."""
        last: list[list[Sample]] = [[]]

        def attempt() -> tuple[list[Sample]] | None:
            last[0] = self.query(promql)
            # In a tuple: an empty answer can be the awaited one ("no alert firing").
            return (last[0],) if predicate(last[0]) else None

        answer: tuple[list[Sample]] = poll(
            f"Prometheus query {promql!r}",
            attempt,
            timeout_s=timeout_s,
            describe=lambda: f"it last answered {last[0]}; targets: {self.targets()}",
        )
        return answer[0]

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health and last error."""
        targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return targets

    def wait_until_scraped(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Until every target of ``job`` has been scraped successfully at least once.

        About 5 s after start: Prometheus hands discovered targets to the scrape loop on a 5 s
        tick, not at once (a hidden flag, --scrape.discovery-reload-interval, does not help).
        """
        self.wait_for(
            f'up{{job="{self.job}"}}',
            lambda samples: bool(samples) and all(s.value == 1 for s in samples),
            timeout_s=timeout_s,
        )


class PromQLError(Exception):
    """Prometheus refused a query or answered in a shape the caller did not ask for."""


class Alertmanager(ServerProcess):
    """A real Prometheus Alertmanager on a free port; its v2 API at ``url + "/api/v2/..."``.

    ``with Alertmanager(need("prometheus-alertmanager"), tmp_path) as am: am.alerts()``. It
    routes everything to a receiver with no integrations: tests read alerts back from its API.
    """

    name = "alertmanager"

    def __init__(self, binary: str, workdir: Path) -> None:
        super().__init__(binary, workdir)
        self.config_path = workdir / "alertmanager.yml"
        self.config: dict[str, Any] = {
            "route": {"receiver": "null", "group_wait": "1s", "group_interval": "1s"},
            "receivers": [{"name": "null"}],
        }

    def command(self) -> list[str]:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Empty: no gossip port (one instance, and nothing else to bind).
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (active, silenced and inhibited alerts; resolved ones are not)."""
        reply = self.client.get(f"{self.url}/api/v2/alerts", params=filters)
        reply.raise_for_status()
        alerts: list[dict[str, Any]] = reply.json()
        return alerts
