"""`unless_gone`: the work's result, or `ClientGone` with the work cancelled when the client goes."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from aivitals.gateway.disconnect import ClientGone, unless_gone


class Client:
    """An ASGI receive that says ``http.disconnect`` once `leave` is called."""

    def __init__(self) -> None:
        self.left = asyncio.Event()

    def leave(self) -> None:
        self.left.set()

    async def receive(self) -> Message:
        await self.left.wait()
        return {"type": "http.disconnect"}


async def test_the_works_result_when_the_client_stays() -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 7

    assert await unless_gone(Client().receive, work()) == 7


async def test_the_works_error_passes_through() -> None:
    async def work() -> int:
        raise LookupError("upstream said no")

    with pytest.raises(LookupError, match="upstream said no"):
        await unless_gone(Client().receive, work())


async def test_a_client_leaving_cancels_the_work_and_raises_client_gone() -> None:
    client = Client()
    cleaned = asyncio.Event()

    async def work() -> int:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.set()  # the upstream connection is closed here, before ClientGone
        return 0

    asyncio.get_running_loop().call_later(0.01, client.leave)
    with pytest.raises(ClientGone):
        await unless_gone(client.receive, work())
    assert cleaned.is_set()


async def test_cancelling_the_handler_is_not_a_client_gone() -> None:
    async def work() -> int:
        await asyncio.sleep(60)
        return 0

    handler = asyncio.ensure_future(unless_gone(Client().receive, work()))
    await asyncio.sleep(0.01)
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
