"""Running the mock: `MockServer` in a background thread for tests, `serve` in the foreground.

Both bind the socket themselves, so port 0 works: the real port is read from the bound socket.

>>> with MockServer(MockConfig(time_scale=0)) as server:
...     server.url == server.base_url.removesuffix("/v1")
True
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn

from aivitals.mock_llm.app import MockStats, create_app
from aivitals.mock_llm.config import MockConfig
from aivitals.mock_llm.streaming import cut_on_purpose
from aivitals.serving import AnnouncingServer, bind, origin

_STOP_TIMEOUT_S = 10.0
# An in-flight request still holding its connection (a hang nobody timed out) is cancelled after
# this, so leaving a `with MockServer()` block never waits out `hang_s`.
_GRACEFUL_SHUTDOWN_S = 2
_UNFINISHED_RESPONSE = "ASGI callable returned without completing response."


class _CutFilter(logging.Filter):
    """Drops uvicorn's complaint about an unfinished response when the cut was asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == _UNFINISHED_RESPONSE and cut_on_purpose())


def _quiet_requested_cuts() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _CutFilter) for existing in logger.filters):
        logger.addFilter(_CutFilter())


def _uvicorn_config(config: MockConfig, stats: MockStats, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(config, stats=stats),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        **options,
    )


class MockServer:
    """The mock upstream on ``127.0.0.1`` and a free port, in a background thread.

    Point an OpenAI client at ``base_url``. Leaving the ``with`` block stops the server and
    waits for its thread, and the listening socket is closed.
    """

    def __init__(
        self, config: MockConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or MockConfig()
        self._host = host
        self._port = port
        self._stats = MockStats()
        self._server: AnnouncingServer | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._failure: BaseException | None = None
        self.url = ""
        """``http://127.0.0.1:PORT``, once started."""

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``: `url` and ``/v1``."""
        return self.url + "/v1"

    def start(self) -> MockServer:
        """Bind, start the thread and wait until the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("MockServer is already running")
        self._socket = bind(self._host, self._port)
        self.url = origin(self._socket)
        started = threading.Event()
        # log_config=None: leave the process's logging handlers alone (pytest captures them).
        self._server = AnnouncingServer(
            _uvicorn_config(self.config, self._stats, log_config=None), started.set
        )
        _quiet_requested_cuts()
        self._thread = threading.Thread(
            target=self._run, name=f"aivitals-mock-llm {self.url}", daemon=True
        )
        self._thread.start()
        while not started.wait(0.01):
            if not self._thread.is_alive() or self._failure is not None:
                self.stop()
                raise RuntimeError("the mock LLM server did not start") from self._failure
        return self

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # handed to start(), or lost with the thread
            self._failure = exc

    def stop(self) -> None:
        """Ask the server to exit and wait for it; idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_S)
            if self._thread.is_alive():
                raise RuntimeError("the mock LLM server did not stop in time")
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def stats(self) -> dict[str, Any]:
        """What ``GET /mock/stats`` answers: totals per endpoint, model and injected error."""
        return self._stats.snapshot()

    def requests(self) -> list[dict[str, Any]]:
        """What ``GET /mock/requests`` lists: recent requests with the headers they arrived with."""
        return self._stats.requests()

    def reset(self) -> None:
        """Zero the stats and restart the seeded sequence, as ``POST /mock/reset`` does."""
        # Over HTTP, so the planner is reset on the server's own thread between two requests.
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=10)
        try:
            connection.request("POST", "/mock/reset")
            reply = connection.getresponse()
            reply.read()
            if reply.status != 200:
                raise RuntimeError(f"POST /mock/reset answered {reply.status}")
        finally:
            connection.close()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    config: MockConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8900,
    announce: Callable[[str], None] = print,
) -> None:
    """Run the mock in the foreground until Ctrl+C; what ``aivitals mock-llm`` does.

    Once listening, ``announce`` gets one line with the base URL for OpenAI clients. Ctrl+C
    (SIGINT) shuts the server down and returns; port 0 picks a free port.
    """
    config = config or MockConfig()
    sock = bind(host, port)
    base_url = origin(sock) + "/v1"
    server = AnnouncingServer(
        _uvicorn_config(config, MockStats()),
        lambda: announce(f"aivitals mock-llm listening on {base_url}"),
    )
    _quiet_requested_cuts()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down on Ctrl+C, then raises the signal again for its caller; Ctrl+C is
        # how this function is meant to end, so it returns normally.
        pass
    finally:
        sock.close()
