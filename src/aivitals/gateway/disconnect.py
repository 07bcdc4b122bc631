"""Waiting on the upstream for a client who may give up first.

Once a request's body is read, the next ASGI ``receive`` returns only when the client goes
(``http.disconnect``). `unless_gone` races the work (the upstream request, until the head of
its answer: a whole answer's body follows at once) against that: the client leaving cancels the
work at once, which closes the upstream connection (aiohttp drops a request cancelled mid-way),
so the upstream stops too, and the call is recorded as ``cancelled`` when the client went rather
than when the upstream would have answered. A stream, once started, is watched by the streaming
response itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.types import Receive

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_gone(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """The result of ``work``; raises `ClientGone` (``work`` cancelled) if the client leaves
    first. The request body must have been read already.

    Two tasks and done-callbacks rather than `asyncio.wait`, which costs about twice as much for
    the same race; this is on every gateway request.
    """
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    watch = loop.create_task(_disconnected(receive))
    watch.add_done_callback(lambda _: task.cancel())
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        # Gone, unless this handler is being cancelled itself (the server shutting down).
        if not watch.cancelled() and watch.done() and current and not current.cancelling():
            raise ClientGone from None
        raise
    finally:
        watch.cancel()
