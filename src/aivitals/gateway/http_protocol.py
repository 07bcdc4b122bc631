"""uvicorn's httptools protocol, with the writes of one event-loop turn sent as one.

uvicorn writes a response's head to the socket when the app sends ``http.response.start``, and
its body at ``http.response.body``: two ``send`` system calls for every whole answer, and, on
loopback, two wake-ups of the client, which shares the cores. A profile of ``aivitals serve``
under a closed loop had those writes at about a third of the event loop's CPU. Here the writes
made during one turn of the loop are joined and written at the end of it (``call_soon``), so a
head and the body sent right after it leave in one call; a stream's chunks, each sent when the
upstream's arrives, still leave as they come (a turn later, microseconds).

Why by hand: uvicorn has no option for it, and its protocol takes the transport it is given, so
the wrapper is the least it takes. `protocol_class` is what ``serve`` gives uvicorn: this class
when httptools is installed (as ``uvicorn[standard]`` has it), else uvicorn's own choice.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["protocol_class"]


class _JoinedWrites:
    """A transport whose writes wait for the end of the loop's turn, then go as one."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(d) for d in self._pending)

    def close(self) -> None:
        self._flush()  # what was written goes before the close, as it would have
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def protocol_class() -> type[asyncio.Protocol] | str:
    """The HTTP protocol ``serve`` runs uvicorn with."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415
    except ImportError:  # no httptools: uvicorn's h11 protocol, unchanged
        return "auto"

    class JoinedWritesProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            joined = _JoinedWrites(transport, self.loop)
            super().connection_made(joined)  # type: ignore[arg-type]

    return JoinedWritesProtocol
