"""`BodyLimitMiddleware`: a request body must be small enough and arrive soon enough.

Size: a declared ``Content-Length`` over the limit is refused with 413 before the app runs; a body
without one (chunked) is counted as it arrives, and the read that passes the limit raises
`BodyTooLarge`. Time: the whole body must arrive within a deadline counted from the app's first
read of it; the read that would wait past it raises `BodyReadTimeout` (408). Without one, a client
that sends its headers and then stalls holds a connection and a task for as long as it likes
(uvicorn bounds idle keep-alive connections, not a request's body). Both exceptions are
`HTTPException`s, so the app's error handlers answer them in the API's error shape, and the
gateway's routes in OpenAI's.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aivitals.server.encoding import JsonResponse

BODY_TIMEOUT_S = 30.0
"""How long a whole request body may take to arrive: 10 MB at about 350 KB/s."""


class BodyTooLarge(HTTPException):
    """The request body passed ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))
        self.limit = limit


class BodyReadTimeout(HTTPException):
    """The request body did not arrive within ``timeout_s``.

    The answer closes the connection: the rest of a stalled body may still come, and nothing
    could tell it from the next request.
    """

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            408,
            f"the request body did not arrive within {timeout_s:g} s; send it at once",
            headers={"connection": "close"},
        )
        self.timeout_s = timeout_s


def too_large(limit: int) -> str:
    return f"the request body is over the {limit:,}-byte limit; send smaller batches"


class BodyLimitMiddleware:
    """Refuse HTTP request bodies over ``max_body_bytes`` (413) or slower than ``body_timeout_s``
    (408).

    Paths under one of ``exempt`` skip the size limit only: the gateway's ``/v1/`` routes keep
    their own, larger one and answer it in OpenAI's error shape. The deadline holds for every path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        exempt: tuple[str, ...] = (),
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        if max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be 0 or more, got {max_body_bytes}")
        if not body_timeout_s > 0:
            raise ValueError(f"body_timeout_s must be above 0, got {body_timeout_s}")
        self.app = app
        self.limit = max_body_bytes
        self.exempt = exempt
        self.timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limited = not (self.exempt and scope["path"].startswith(self.exempt))
        if limited:
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.limit:
                response = JsonResponse({"error": too_large(self.limit)}, status_code=413)
                await response(scope, receive, send)
                return
        received = 0
        deadline: float | None = None
        complete = False

        async def guarded() -> Message:
            nonlocal received, deadline, complete
            if complete:
                # The body is in: what follows is the wait for a disconnect, unbounded.
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout_s
            try:
                # asyncio's own timeout: half the cost of anyio's cancel scope, on every request
                # (uvicorn serves on asyncio, and the gateway's aiohttp needs it anyway).
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyReadTimeout(self.timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if limited and received > self.limit:
                    raise BodyTooLarge(self.limit)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, guarded, send)
