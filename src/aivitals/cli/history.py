"""Reading the stored history: ``aivitals report``, ``aivitals calls``, ``aivitals export``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aivitals.cli.app import app, console, errors, fail
from aivitals.cli.output import Output, emit
from aivitals.config import ConfigError, read_env
from aivitals.report_tables import (
    breakdown_table,
    cache_table,
    calls_table,
    forecast_line,
    guardrails_line,
    summary_panel,
)

if TYPE_CHECKING:
    from aivitals.store.sql import SqlStore

DEFAULT_STORE = "./aivitals.db"

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="The store: a SQLite file or a SQLAlchemy URL. Default: $AIVITALS_STORE or ./aivitals.db.",
        show_default=False,
    ),
]
SinceOption = Annotated[
    str, typer.Option(help="How far back: 30m, 24h, 7d, 2w, or an ISO date like 2026-11-01.")
]
WhereOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Keep only calls where FIELD=VALUE (repeatable): model, provider, feature, team, "
        "user, prompt_version, environment, status, error_type, operation, service_tier, "
        "quantization.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
CsvOption = Annotated[bool, typer.Option("--csv", help="Print CSV instead of tables.")]


@contextmanager
def _reading(db: str | None) -> Iterator[SqlStore]:
    """Open the store for reading, turning every known failure into a one-line error."""
    from aivitals.query import QueryError  # noqa: PLC0415  # keeps `aivitals --help` fast
    from aivitals.store.errors import StoreError  # noqa: PLC0415
    from aivitals.store.sql import SqlStore  # noqa: PLC0415

    try:
        target = db or read_env().store or DEFAULT_STORE
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if "://" not in target and not Path(target).exists():
        raise fail(f"no store at {target}: run `aivitals demo` to make one, or point --db at yours")
    try:
        store = SqlStore.open(target)
    except StoreError as exc:
        raise fail(str(exc)) from None
    try:
        yield store
    except (QueryError, StoreError) as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()


def _say_skipped(count: int) -> None:
    """On standard error, so JSON and CSV on standard output stay clean."""
    errors.print(
        f"left out {count:,} stored rows that cannot be read (a value out of range or text "
        "that is not valid Unicode, written by an older version or another tool)",
        highlight=False,
    )


def _output(json_: bool, csv_: bool) -> Output:
    if json_ and csv_:
        raise fail("--json and --csv go one at a time")
    return "json" if json_ else "csv" if csv_ else "table"


@app.command()
def report(
    since: SinceOption = "24h",
    by: Annotated[
        str, typer.Option(help="Break cost and latency down by these fields, comma-separated.")
    ] = "model",
    where: WhereOption = None,
    db: DbOption = None,
    json_: JsonOption = False,
    csv_: CsvOption = False,
) -> None:
    """Spend, latency and quality over a window, broken down by model, feature, team...

    Examples: `aivitals report --since 7d --by feature,team`,
    `aivitals report --where team=search --json`.
    """
    from aivitals.query import Queries, check_by, parse_since, parse_where  # noqa: PLC0415

    output = _output(json_, csv_)
    with _reading(db) as store:
        window = parse_since(since, now=datetime.now(UTC))
        filters = parse_where(where or [])
        fields = check_by([name.strip() for name in by.split(",") if name.strip()])
        # One read for both: the summary and its breakdown share the rollup scan.
        result = Queries(store.engine).report(window, filters, fields)
        summary, rows = result.summary, result.breakdown
        cache = Queries(store.engine).cache_impact(window, filters)
        if output != "table":
            document = {"window": window, "filters": filters, "summary": summary}
            emit(output, {**document, "breakdown": rows, "cache": cache}, rows)
            return
        console.print(summary_panel(summary, window))
        console.print(breakdown_table(rows, fields))
        if cache.hits:
            console.print(cache_table(cache))
        if cache.guardrails or cache.content_filter_blocks:
            console.print(guardrails_line(cache), highlight=False, soft_wrap=True)
        from aivitals.query.forecast import forecast_spend  # noqa: PLC0415  # scipy

        month = forecast_spend(Queries(store.engine), datetime.now(UTC), "month", filters=filters)
        console.print(forecast_line(month), highlight=False)


@app.command()
def calls(
    since: SinceOption = "1h",
    where: WhereOption = None,
    limit: Annotated[int, typer.Option(help="How many calls to show.", min=1, max=10_000)] = 50,
    offset: Annotated[int, typer.Option(help="Skip this many newest calls first.", min=0)] = 0,
    db: DbOption = None,
    json_: JsonOption = False,
    csv_: CsvOption = False,
) -> None:
    """The recorded calls themselves, newest first, with their quality scores."""
    from aivitals.query import Queries, parse_since, parse_where  # noqa: PLC0415

    output = _output(json_, csv_)
    with _reading(db) as store:
        window = parse_since(since, now=datetime.now(UTC))
        found = Queries(store.engine).calls_page(
            window, parse_where(where or []), limit=limit, offset=offset
        )
        page = found.calls
        if found.skipped_rows:
            _say_skipped(found.skipped_rows)
        if output != "table":
            emit(output, page, page)
            return
        console.print(calls_table(page))


@app.command()
def export(
    format_: Annotated[str, typer.Option("--format", help="csv, jsonl or parquet.")] = "jsonl",
    since: SinceOption = "24h",
    where: WhereOption = None,
    output_path: Annotated[
        str, typer.Option("--output", "-o", help="The file to write; - for standard output.")
    ] = "-",
    db: DbOption = None,
) -> None:
    """Export the raw calls of a window for analysis elsewhere (one row per call)."""
    from aivitals.cli.export import EXPORTERS, export_calls  # noqa: PLC0415
    from aivitals.query import parse_since, parse_where  # noqa: PLC0415

    if format_ not in EXPORTERS:
        raise fail(f"--format must be one of {', '.join(sorted(EXPORTERS))}, not {format_!r}")
    if format_ == "parquet" and output_path == "-":
        raise fail("parquet is a binary format: give a file with --output")
    with _reading(db) as store:
        window = parse_since(since, now=datetime.now(UTC))
        filters = parse_where(where or [])
        exported = export_calls(
            store,
            window,
            filters,
            format_=format_,
            target=sys.stdout if output_path == "-" else Path(output_path),
        )
    if output_path != "-":
        console.print(f"wrote {exported.written:,} calls to {output_path}", highlight=False)
    if exported.skipped_rows:
        _say_skipped(exported.skipped_rows)
