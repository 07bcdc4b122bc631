"""Writing raw calls out as CSV, JSON lines or Parquet, page by page (never all in memory).

A stored row that cannot be read back as a call (a value out of range, text that is not valid
Unicode: written by an older version or another tool) is left out and counted, as every read
does; CSV and Parquet could not hold its text anyway.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from aivitals.query import Filters, Window
from aivitals.query.filters import call_conditions
from aivitals.store.rows import epoch_ms, readable_call
from aivitals.store.schema import calls

PAGE = 5000
COLUMNS = [column.name for column in calls.columns if column.name != "cost_nusd"]


@dataclass
class Exported:
    """How many calls an export wrote, and how many stored rows it left out as unreadable."""

    written: int = 0
    skipped_rows: int = 0


def _pages(
    engine: sa.Engine, window: Window, filters: Filters, exported: Exported
) -> Iterator[list[dict[str, Any]]]:
    """Pages of readable call rows, oldest first, by keyset on (started_ms, id)."""
    conditions = [
        calls.c.started_ms >= epoch_ms(window.start),
        calls.c.started_ms < epoch_ms(window.end),
        *call_conditions(filters),
    ]
    after: tuple[int, str] | None = None
    selected = [calls.c[name] for name in COLUMNS]
    with engine.connect() as connection:
        while True:
            query = sa.select(*selected).where(*conditions)
            if after is not None:
                query = query.where(sa.tuple_(calls.c.started_ms, calls.c.id) > after)
            query = query.order_by(calls.c.started_ms, calls.c.id).limit(PAGE)
            rows = [dict(row._mapping) for row in connection.execute(query)]
            if not rows:
                return
            after = (rows[-1]["started_ms"], rows[-1]["id"])
            readable = [row for row in rows if readable_call(row) is not None]
            exported.skipped_rows += len(rows) - len(readable)
            if readable:
                yield readable


def _with_time(row: dict[str, Any]) -> dict[str, Any]:
    # Exports carry a readable UTC timestamp beside the epoch milliseconds.
    from datetime import UTC, datetime  # noqa: PLC0415

    row["started_at"] = datetime.fromtimestamp(row["started_ms"] / 1000, UTC).isoformat()
    return row


def _write_jsonl(pages: Iterator[list[dict[str, Any]]], target: IO[str]) -> int:
    written = 0
    for page in pages:
        for raw in page:
            row = _with_time(raw)
            row["tags"] = json.loads(row["tags"]) if row["tags"] else {}
            target.write(json.dumps(row, separators=(",", ":")) + "\n")
        written += len(page)
    return written


def _write_csv(pages: Iterator[list[dict[str, Any]]], target: IO[str]) -> int:
    writer = csv.DictWriter(target, fieldnames=["started_at", *COLUMNS])
    writer.writeheader()
    written = 0
    for page in pages:
        writer.writerows(_with_time(row) for row in page)
        written += len(page)
    return written


def _write_parquet(pages: Iterator[list[dict[str, Any]]], path: Path) -> int:
    try:
        import pyarrow as pa  # noqa: PLC0415  # optional: aivitals[parquet]
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise RuntimeError(
            "parquet export needs pyarrow: pip install 'aivitals[parquet]'"
        ) from None
    # Column types from the table definition, so a page where a column is all null still fits.
    types = {sa.Boolean: pa.bool_(), sa.Float: pa.float64()}
    fields = [pa.field("started_at", pa.string())]
    for name in COLUMNS:
        column_type = type(calls.c[name].type)
        if issubclass(column_type, sa.Integer):
            fields.append(pa.field(name, pa.int64()))
        else:
            fields.append(pa.field(name, types.get(column_type, pa.string())))
    schema = pa.schema(fields)
    written = 0
    with pq.ParquetWriter(path, schema) as writer:
        for page in pages:
            writer.write_table(
                pa.Table.from_pylist([_with_time(row) for row in page], schema=schema)
            )
            written += len(page)
    return written


EXPORTERS: dict[str, Callable[..., int]] = {
    "jsonl": _write_jsonl,
    "csv": _write_csv,
    "parquet": _write_parquet,
}


def export_calls(
    engine: sa.Engine, window: Window, filters: Filters, *, format_: str, target: IO[str] | Path
) -> Exported:
    """Write every readable call of the window matching the filters; say how many."""
    exported = Exported()
    pages = _pages(engine, window, filters, exported)
    if format_ == "parquet":
        if not isinstance(target, Path):
            raise ValueError("parquet needs a file path")
        exported.written = _write_parquet(pages, target)
    elif isinstance(target, Path):
        with target.open("w", encoding="utf-8", newline="") as handle:
            exported.written = EXPORTERS[format_](pages, handle)
    else:
        exported.written = EXPORTERS[format_](pages, target)
    return exported
