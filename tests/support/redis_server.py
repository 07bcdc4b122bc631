"""A real redis-server for the tests of shared state, started by PID on a free 127.0.0.1 port.

``scripts/install-test-servers`` installs the Debian package (``make test`` runs it). Fixtures:
``redis_server`` (session: the `RedisServer`, which a test may stop, freeze and restart),
``redis_url`` (session: its URL) and ``redis_db`` (function: the URL of a running, thawed and
flushed server, so each test starts from an empty Redis even after another stopped it).

A test module loads the fixtures as a plugin (importing them by name would shadow them, F811)::

    pytest_plugins = ("tests.support.redis_server",)

No test here; test modules import from it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest
import redis

from .realservers import DEFAULT_TIMEOUT_S, ServerProcess, _Exited, need


class RedisServer(ServerProcess):
    """``redis-server`` in the foreground of its own process, with no persistence.

    ``stop()`` ends it (SIGTERM, or SIGKILL with ``kill=True``: a crash), ``start()`` brings it
    back on the same port (empty: nothing is saved), ``freeze()``/``thaw()`` stop and continue it
    (SIGSTOP/SIGCONT), which is what a hung Redis looks like to a client: connects that hang, no
    answer and no error.
    """

    name = "redis-server"
    keeps_port = True

    def __init__(self, binary: str, workdir: Path) -> None:
        super().__init__(binary, workdir)
        self.log_path = workdir / "redis.log"
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
        ]

    def start(self) -> Self:
        """Starts the server (on a new free port the first time, on its own port after)."""
        if self.running:
            return self
        super().start()
        self.frozen = False
        return self

    def _ready(self) -> bool:
        if self._returncode() is not None:
            raise _Exited
        return self.ping()

    def ping(self, timeout_s: float = 1.0) -> bool:
        """Whether the server answers PING now (raw RESP, so this module needs no client)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def command_raw(self, *args: str, timeout_s: float = 5.0) -> bytes:
        """Sends one command (inline form, simple arguments) and returns the raw reply line."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as sock:
            sock.sendall((" ".join(args) + "\r\n").encode())
            return sock.recv(65536)

    def flush(self) -> None:
        """Empties every database."""
        reply = self.command_raw("FLUSHALL")
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def stop(self, *, kill: bool = False) -> None:
        """Ends the server (SIGKILL with ``kill``); its data is gone (no persistence)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if self.frozen:
            # A stopped process does not act on SIGTERM until continued.
            process.send_signal(signal.SIGCONT)
            self.frozen = False
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=DEFAULT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=DEFAULT_TIMEOUT_S)

    def restart(self) -> Self:
        """Stops and starts it again on the same port: an empty Redis at the same URL."""
        self.stop()
        return self.start()

    def freeze(self) -> None:
        """SIGSTOP: the server holds its connections and answers nothing (a hung Redis)."""
        if self.process is not None and not self.frozen:
            self.process.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        if self.process is not None and self.frozen:
            self.process.send_signal(signal.SIGCONT)
            self.frozen = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


class RawClients:
    """Plain redis-py clients for a test to look into Redis with, all closed by `close`
    (an unclosed one is a ResourceWarning, an error under the suite's warning filters)."""

    def __init__(self) -> None:
        self._made: list[redis.Redis] = []

    def __call__(self, url: str, *, decode: bool = False) -> redis.Redis:
        client = redis.Redis.from_url(url, decode_responses=decode)
        self._made.append(client)
        return client

    def close(self) -> None:
        while self._made:
            self._made.pop().close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (fails under CI when redis-server is missing)."""
    binary = need("redis-server", package="redis-server")
    with RedisServer(binary, tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL (``redis://127.0.0.1:PORT/0``)."""
    return redis_server.url


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[str]:
    """The URL of the session server, running, thawed and empty for this test."""
    redis_server.thaw()
    redis_server.start()
    redis_server.flush()
    yield redis_server.url
    # A test that stopped or froze it leaves it whole for the next one.
    redis_server.thaw()
    redis_server.start()
