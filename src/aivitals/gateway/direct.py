"""The gateway's routes straight from the ASGI server, past the framework's layers.

Every request to the server goes through FastAPI's stack: its error, exception, exit-stack and
telemetry middlewares, then the router, which tries each API route in turn before reaching the
gateway's, which are mounted last. A profile of ``aivitals serve`` under a closed loop had those
layers at about a fifth of a proxied request's CPU; the proxied routes use none of what they
give (dependencies, validation, exception handlers: the proxy answers every error itself, in
OpenAI's shape). `DirectRoutes` answers the gateway's exact paths and methods itself, inside the
server's own middlewares (its request metrics and body deadline, which `create_app` wraps around
it, so those see gateway requests as before), and leaves everything else to the app.

Why by hand and not another framework: the dispatch is one dict lookup on an exact path, which
is all these routes need (they have no path parameters).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class DirectRoutes:
    """Look a request's route up by exact path and method (`match`), and answer it (``__call__``
    on a scope `match` filled in)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes: dict[tuple[str, str], Route] = {}
        for route in routes:
            for method in route.methods or ():
                self._routes[route.path, method] = route

    def match(self, scope: Scope) -> Route | None:
        """The route that answers this request, if one of these does; sets ``scope["route"]``
        (which the server's metrics label requests by) when one does."""
        if scope["type"] != "http" or scope.get("root_path"):
            return None  # behind a path prefix, the app's router knows how to strip it
        route = self._routes.get((scope["path"], scope["method"]))
        if route is not None:
            scope["route"] = route
        return route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: Route = scope["route"]
        endpoint: Endpoint = route.endpoint
        response = await endpoint(Request(scope, receive, send))
        await response(scope, receive, send)
