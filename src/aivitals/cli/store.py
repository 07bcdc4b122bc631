"""`aivitals store copy`: a whole history from one store to another (SQLite to PostgreSQL, or
back), with its rollups, scores, outcomes, contents and baselines (`aivitals.store.copy`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from aivitals.cli.app import app, console, errors, fail

store_app = typer.Typer(
    name="store",
    help="The store itself: copy a history between SQLite and PostgreSQL.",
    no_args_is_help=True,
)
app.add_typer(store_app)

_PROGRESS_EVERY_S = 1.0


@store_app.command("copy")
def copy(
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            help="The store to copy: a SQLite file or a SQLAlchemy URL, read in one snapshot "
            "(brought to the current schema first if older, as every command does).",
            metavar="STORE",
        ),
    ],
    to: Annotated[
        str,
        typer.Option(
            help="Where to copy it: a SQLite file (created if missing) or a URL such as "
            "postgresql+psycopg://user@host/aivitals. Must be empty, unless --replace.",
            metavar="STORE",
        ),
    ],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Delete what --to holds first (in the same transaction as the copy)."
        ),
    ] = False,
    batch_rows: Annotated[
        int, typer.Option(help="Rows read and written at a time.", min=1, metavar="N")
    ] = 5000,
) -> None:
    """Copy every call, score, outcome, content, rollup, score rollup and baseline of --from into
    --to, in batches with progress on standard error, then check the counts on both sides.

    The copy is one transaction on --to: if it fails, --to is left as it was.
    """
    from aivitals.store.copy import copy_store  # noqa: PLC0415  # keeps `aivitals --help` fast
    from aivitals.store.errors import StoreError  # noqa: PLC0415
    from aivitals.store.sql import SqlStore  # noqa: PLC0415

    if "://" not in from_ and not Path(from_).is_file():
        raise fail(f"--from: no store at {from_}; give a SQLite file or a database URL")
    if from_ == to:
        raise fail("--from and --to are the same store")
    try:
        source = SqlStore.open(from_)
    except StoreError as exc:
        raise fail(f"--from: {exc}") from None
    try:
        try:
            target = SqlStore.open(to)
        except StoreError as exc:
            raise fail(f"--to: {exc}") from None
        try:
            shown = {"at": 0.0}

            def progress(table: str, done: int, total: int) -> None:
                # Once a second, and at each table's end: a line per batch would flood a log.
                now = time.monotonic()
                if done == total or now - shown["at"] >= _PROGRESS_EVERY_S:
                    shown["at"] = now
                    errors.print(f"{table}: {done:,} of {total:,} rows", highlight=False)

            started = time.monotonic()
            copied = copy_store(
                source, target, replace=replace, batch_rows=batch_rows, progress=progress
            )
        except StoreError as exc:
            raise fail(str(exc)) from None
        finally:
            target.close()
    finally:
        source.close()
    moved = ", ".join(f"{name} {n:,}" for name, n in copied.rows.items())
    console.print(
        f"copied {source.name} to {target.name} in {time.monotonic() - started:.1f} s: {moved}; "
        "row counts checked on both sides",
        highlight=False,
        soft_wrap=True,
    )
