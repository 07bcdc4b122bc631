"""`aivitals.gateway.http_protocol`: the writes of one event-loop turn leave as one, in order."""

from __future__ import annotations

import asyncio

from aivitals.gateway.http_protocol import _JoinedWrites, protocol_class


class Recording:
    """A transport that keeps what it is asked to do."""

    def __init__(self) -> None:
        self.did: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.did.append(("write", data))

    def close(self) -> None:
        self.closing = True
        self.did.append(("close", b""))

    def abort(self) -> None:
        self.did.append(("abort", b""))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def _turns(transport: Recording) -> list[list[tuple[str, bytes]]]:
    joined = _JoinedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    seen = []
    joined.write(b"HTTP/1.1 200 OK\r\n\r\n")
    joined.write(b"")
    joined.write(bytearray(b"body"))
    seen.append(list(transport.did))  # nothing yet: the turn is not over
    assert joined.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\nbody")
    await asyncio.sleep(0)
    seen.append(list(transport.did))
    joined.write(b"next")
    joined.close()  # flushes what was written before closing
    seen.append(list(transport.did))
    await asyncio.sleep(0)
    joined.write(b"late")
    await asyncio.sleep(0)  # the transport is closing: nothing more is written
    seen.append(list(transport.did))
    assert joined.get_extra_info("socket") == "info:socket"
    return seen


def test_a_head_and_its_body_written_in_one_turn_leave_in_one_write() -> None:
    transport = Recording()
    before, after_turn, after_close, at_end = asyncio.run(_turns(transport))
    assert before == []
    assert after_turn == [("write", b"HTTP/1.1 200 OK\r\n\r\nbody")]
    assert after_close == [*after_turn, ("write", b"next"), ("close", b"")]
    assert at_end == after_close


def test_an_abort_drops_what_waits() -> None:
    async def run() -> list[tuple[str, bytes]]:
        transport = Recording()
        joined = _JoinedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        joined.write(b"never")
        joined.abort()
        await asyncio.sleep(0)
        return transport.did

    assert asyncio.run(run()) == [("abort", b"")]


def test_serve_runs_uvicorn_with_the_joined_writes_protocol_when_httptools_is_there() -> None:
    chosen = protocol_class()
    assert not isinstance(chosen, str)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert issubclass(chosen, HttpToolsProtocol)
