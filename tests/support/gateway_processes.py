"""`aivitals serve` and `aivitals mock-llm` as real processes, and a raw HTTP/1.1 client over h11.

The wire tests of the gateway need what a user runs: the CLI's own processes, uvicorn with
httptools as `serve` picks it, a real socket between each hop. `Wire` speaks HTTP/1.1 with h11 on
one socket, so a test controls framing (chunked, a body that stalls) and sees whether the
connection survives a request.

No test here; test modules import from it.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11

from .realservers import DEFAULT_TIMEOUT_S, ServerProcess, poll

AIVITALS = str(Path(sys.executable).with_name("aivitals"))


class MockLlmProcess(ServerProcess):
    """``aivitals mock-llm`` on a free port; ``args`` are its flags."""

    name = "mock-llm"
    ready_path = "/v1/models"

    def __init__(self, workdir: Path, *args: str) -> None:
        super().__init__(AIVITALS, workdir)
        self.args = args

    def command(self) -> list[str]:
        return [self.binary, "mock-llm", "--port", str(self.port), *self.args]

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def requests(self) -> list[dict[str, Any]]:
        """What ``GET /mock/requests`` answers: the requests received, oldest first."""
        reply = self.client.get(self.url + "/mock/requests")
        reply.raise_for_status()
        requests: list[dict[str, Any]] = reply.json()["requests"]
        return requests

    def request_with(self, header: str, value: str) -> dict[str, Any]:
        """The one request received carrying ``header: value`` (waits for it, bounded)."""

        def find() -> list[dict[str, Any]]:
            return [r for r in self.requests() if [header, value] in r["headers"]]

        (found,) = poll(f"a request with {header}: {value} at the mock", find)
        request: dict[str, Any] = found
        return request

    def stats(self) -> dict[str, Any]:
        reply = self.client.get(self.url + "/mock/stats")
        reply.raise_for_status()
        stats: dict[str, Any] = reply.json()
        return stats


class ServeProcess(ServerProcess):
    """``aivitals serve`` on a free port with its store in ``workdir``; ``args`` are its flags."""

    name = "serve"
    ready_path = "/readyz"

    def __init__(self, workdir: Path, *args: str) -> None:
        super().__init__(AIVITALS, workdir)
        self.args = args

    def command(self) -> list[str]:
        db = self.workdir / "aivitals.db"
        return [self.binary, "serve", "--port", str(self.port), "--db", str(db), *self.args]

    def call_tagged(self, test_id: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """The one stored call tagged ``test=<test_id>`` (``X-Aivitals-Tag-Test``), from the read
        API, waiting (bounded) for the recorder to store it."""

        def find() -> list[dict[str, Any]]:
            reply = self.client.get(self.url + "/api/v1/calls", params={"limit": 1000})
            reply.raise_for_status()
            calls = [item["call"] for item in reply.json()["calls"]]
            return [call for call in calls if call["tags"].get("test") == test_id]

        (found,) = poll(f"the call tagged {test_id} in the store", find, timeout_s=timeout_s)
        call: dict[str, Any] = found
        return call


Headers = Sequence[tuple[str, str]]


class Wire:
    """One HTTP/1.1 connection, driven event by event with h11."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.host = f"{parts.hostname}:{parts.port}"
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout_s)
        self.conn = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, *events: Any) -> None:
        for event in events:
            data = self.conn.send(event)
            if data:
                self.sock.sendall(data)

    def start(self, method: str, target: str, headers: Headers = ()) -> None:
        """Send the request line and headers only (the body, if any, follows with `data`)."""
        self._send(
            h11.Request(method=method, target=target, headers=[("host", self.host), *headers])
        )

    def data(self, *pieces: bytes) -> None:
        """Send body bytes; chunked requests get one chunk per piece."""
        self._send(*(h11.Data(data=piece) for piece in pieces))

    def end(self) -> None:
        self._send(h11.EndOfMessage())

    def request(
        self, method: str, target: str, headers: Headers = (), body: bytes | Iterable[bytes] = b""
    ) -> None:
        """A whole request: ``body`` as bytes (with Content-Length) or pieces (chunked)."""
        if isinstance(body, bytes):
            framing = [("content-length", str(len(body)))] if body or method == "POST" else []
            self.start(method, target, [*headers, *framing])
            if body:
                self.data(body)
        else:
            self.start(method, target, [*headers, ("transfer-encoding", "chunked")])
            self.data(*body)
        self.end()

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Read one whole response: status, headers (lower-case names) and body."""
        status = 0
        headers: dict[str, str] = {}
        body = b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, body
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the server closed the connection before answering")

    def next_cycle(self) -> None:
        """Ready the connection for its next request (keep-alive)."""
        self.conn.start_next_cycle()

    def closed_by_server(self, timeout_s: float = 10.0) -> bool:
        """Whether the server closes the connection (an empty read) within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        self.sock.settimeout(timeout_s)
        while time.monotonic() < deadline:
            try:
                if self.sock.recv(65536) == b"":
                    return True
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
        return False
