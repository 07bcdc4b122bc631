"""The aivitals server: the ingest and read API, ``/metrics`` and health, as one ASGI app.

Build it with `create_app` (an ASGI app for any server, or a test client); `serve` runs it on
uvicorn with a graceful shutdown, as ``aivitals serve`` does. See docs/server.md.
"""

from aivitals.server.app import MAX_BODY_BYTES, create_app
from aivitals.server.context import ServerContext
from aivitals.server.errors import ApiError
from aivitals.server.metrics import ServerMetrics
from aivitals.server.models import MAX_BATCH

__all__ = [
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "ApiError",
    "ServerContext",
    "ServerMetrics",
    "create_app",
]
