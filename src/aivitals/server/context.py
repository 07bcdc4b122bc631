"""What the routes work with: `ServerContext`, one per app, handed to routes as a dependency.

The app keeps it in ``app.state``; nothing is module-level, so two apps (two tests) never share a
recorder, a store or a metrics registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from aivitals.model import utc_now
from aivitals.query import Queries
from aivitals.runtime import Runtime
from aivitals.server.metrics import ServerMetrics
from aivitals.store.sql import SqlStore

ReadinessCheck = Callable[[], str | None]
"""Raises (with a message saying what is wrong) when the server cannot do its work; may return a
note for ``/readyz`` (working, degraded: Redis down and the policy in effect)."""


@dataclass(kw_only=True)
class ServerContext:
    """The runtime calls are recorded into, the store read from, and the server's own parts.

    ``queue_limit``: refuse a batch (503) rather than let the recorder drop part of it when its
    queue would pass this many waiting items (None: never refuse). ``now`` is the clock the read
    endpoints measure ``since`` from. ``checks`` are what ``/readyz`` runs, by name.
    """

    runtime: Runtime
    store: SqlStore | None
    metrics: ServerMetrics
    queue_limit: int | None = None
    now: Callable[[], datetime] = utc_now
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    queries: Queries | None = None

    def __post_init__(self) -> None:
        if self.store is not None and self.queries is None:
            self.queries = Queries(self.store.engine)


def context_of(request: Request) -> ServerContext:
    """The `ServerContext` of the app serving ``request``."""
    context = request.app.state.context
    if not isinstance(context, ServerContext):
        raise TypeError("this app was not built by aivitals.server.create_app")
    return context


Context = Annotated[ServerContext, Depends(context_of)]
"""A route parameter of this type receives the app's `ServerContext`."""
