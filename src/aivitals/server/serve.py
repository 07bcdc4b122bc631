"""Running the app on uvicorn (uvloop and httptools when installed), with a graceful shutdown.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets in-flight requests finish (up to
``graceful_timeout_s``), then runs the app's shutdown, where `create_app(close_on_shutdown=True)`
closes the recorder: every call accepted before the signal is in the store when `serve` returns.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from aivitals.gateway.http_protocol import protocol_class
from aivitals.serving import AnnouncingServer, origin

GRACEFUL_TIMEOUT_S = 30


def _terminated(signum: int, frame: FrameType | None) -> None:
    """Stands in for SIGTERM's default action once uvicorn has shut down (see `serve`)."""


def serve(
    app: ASGIApp,
    sock: socket.socket,
    *,
    announce: Callable[[str], None] = print,
    graceful_timeout_s: int = GRACEFUL_TIMEOUT_S,
    log_level: str = "warning",
) -> None:
    """Serve ``app`` on the bound ``sock`` until SIGTERM or SIGINT, then shut down gracefully.

    Once listening, ``announce`` gets one line with the server's URL. Returns normally after
    either signal; the socket is closed.
    """
    config = uvicorn.Config(
        app,
        loop="auto",
        http=protocol_class(),  # httptools, a whole answer in one write (gateway.http_protocol)
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=graceful_timeout_s,
    )
    server = AnnouncingServer(
        config, lambda: announce(f"aivitals serve listening on {origin(sock)}")
    )
    # uvicorn re-raises the signal that stopped it once it has shut down. SIGTERM's default
    # action would end the process right there, before our caller's clean-up and with a
    # "killed" status; a Python handler turns it into a normal return (exit 0).
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # Ctrl+C is the ordinary way to stop: uvicorn has already shut down gracefully.
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
