"""`BodyLimitMiddleware`: refuse request bodies over a size with a 413 that says the limit.

A declared ``Content-Length`` over the limit is refused before the app runs. A body without one
(chunked) is counted as it arrives, and the read that passes the limit raises `BodyTooLarge`,
which the app's error handlers answer in the API's error shape.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aivitals.server.encoding import JsonResponse


class BodyTooLarge(HTTPException):
    """The request body passed ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))
        self.limit = limit


def too_large(limit: int) -> str:
    return f"the request body is over the {limit:,}-byte limit; send smaller batches"


class BodyLimitMiddleware:
    """Refuse HTTP request bodies over ``max_body_bytes`` with 413.

    Paths under one of ``exempt`` are left alone: the gateway's ``/v1/`` routes keep their own,
    larger limit and answer it in OpenAI's error shape.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, exempt: tuple[str, ...] = ()) -> None:
        if max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be 0 or more, got {max_body_bytes}")
        self.app = app
        self.limit = max_body_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt and scope["path"].startswith(self.exempt)):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            response = JsonResponse({"error": too_large(self.limit)}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)
