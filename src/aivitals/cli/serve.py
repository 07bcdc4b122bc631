"""``aivitals serve``: the ingest and read API, /metrics and health checks, on one port."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from aivitals.cli.app import app, fail
from aivitals.config import ConfigError, read_env

DEFAULT_STORE = "./aivitals.db"
# Calls waiting for the store before ingest answers 503 instead of dropping any.
QUEUE_LIMIT = 50_000


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port to listen on (0: any free port).", min=0, max=65535)
    ] = 8700,
    db: Annotated[
        str | None,
        typer.Option(
            help="The store: a SQLite file (created if missing) or a SQLAlchemy URL. "
            "Default: $AIVITALS_STORE or ./aivitals.db.",
            show_default=False,
        ),
    ] = None,
    no_db: Annotated[
        bool, typer.Option("--no-db", help="Keep no store: metrics only, no history to read.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Server processes (1 for now).", min=1)] = 1,
    retention_days: Annotated[
        float | None, typer.Option(help="Delete raw calls older than this many days.")
    ] = None,
) -> None:
    """Serve the ingest API (POST /api/v1/calls, /api/v1/scores), the read API, /metrics,
    /healthz and /readyz. See docs/server.md.

    SIGTERM or Ctrl+C finishes in-flight requests, then writes every accepted call to the store.
    """
    from aivitals.sdk.runtime import configure  # noqa: PLC0415  # keeps `aivitals --help` fast
    from aivitals.server.app import create_app  # noqa: PLC0415
    from aivitals.server.serve import serve as run  # noqa: PLC0415
    from aivitals.serving import bind  # noqa: PLC0415
    from aivitals.store.errors import StoreError  # noqa: PLC0415
    from aivitals.store.sql import SqlStore  # noqa: PLC0415

    if workers != 1:
        raise fail(
            "--workers above 1 is not supported yet: run one `aivitals serve` per core, each "
            "on its own --port and the same --db, behind your load balancer"
        )
    if no_db and db is not None:
        raise fail("--db and --no-db go one at a time")
    try:
        target = None if no_db else (db or read_env().store or DEFAULT_STORE)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise fail(
            f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port"
        ) from None
    store = None
    try:
        store = SqlStore.open(target) if target is not None else None
        runtime = configure(store=target, retention_days=retention_days, queue_size=QUEUE_LIMIT)
    except (StoreError, ConfigError) as exc:
        sock.close()
        if store is not None:
            store.close()
        raise fail(str(exc)) from None
    server = create_app(
        runtime=runtime, store=store, queue_limit=QUEUE_LIMIT, close_on_shutdown=True
    )
    try:
        run(server, sock, announce=lambda line: print(line, file=sys.stderr, flush=True))
    finally:
        runtime.recorder.close()
        if store is not None:
            store.close()
