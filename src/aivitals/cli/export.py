"""Writing raw calls out as CSV, JSON lines or Parquet, page by page (never all in memory).

The rows come from `Queries.raw_calls`: a stored row that cannot be read back as a call (a value
out of range, text that is not valid Unicode: written by an older version or another tool) is
left out and counted, as every read does; CSV and Parquet could not hold its text anyway. A file
that cannot be written (its folder missing, a folder in its place, no permission) is a one-line
error, as every other mistake at the command line is.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aivitals.cli.app import fail
from aivitals.query import RAW_COLUMNS, Filters, Queries, Window

if TYPE_CHECKING:
    from aivitals.store.sql import SqlStore

COLUMNS = list(RAW_COLUMNS)

Pages = Iterable[list[dict[str, Any]]]


@dataclass
class Exported:
    """How many calls an export wrote, and how many stored rows it left out as unreadable."""

    written: int = 0
    skipped_rows: int = 0


def _with_time(row: dict[str, Any]) -> dict[str, Any]:
    # Exports carry a readable UTC timestamp beside the epoch milliseconds.
    row["started_at"] = datetime.fromtimestamp(row["started_ms"] / 1000, UTC).isoformat()
    return row


def _write_jsonl(pages: Pages, target: IO[str]) -> int:
    written = 0
    for page in pages:
        for raw in page:
            row = _with_time(raw)
            row["tags"] = json.loads(row["tags"]) if row["tags"] else {}
            target.write(json.dumps(row, separators=(",", ":")) + "\n")
        written += len(page)
    return written


def _write_csv(pages: Pages, target: IO[str]) -> int:
    writer = csv.DictWriter(target, fieldnames=["started_at", *COLUMNS])
    writer.writeheader()
    written = 0
    for page in pages:
        writer.writerows(_with_time(row) for row in page)
        written += len(page)
    return written


def _write_parquet(pages: Pages, path: Path) -> int:
    try:
        import pyarrow as pa  # noqa: PLC0415  # optional: aivitals[parquet]
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise fail("parquet export needs pyarrow: pip install 'aivitals[parquet]'") from None
    # Column types from the table's, so a page where a column is all null still fits.
    types = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "text": pa.string()}
    fields = [pa.field("started_at", pa.string())]
    fields += [pa.field(name, types[kind]) for name, kind in RAW_COLUMNS.items()]
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


def check_target(path: Path) -> None:
    """Fail in one line, before anything is read, when ``path`` cannot be a file to write."""
    if path.is_dir():
        raise fail(f"--output: {path} is a folder; name a file, e.g. {path / 'calls.jsonl'}")
    if not path.parent.is_dir():
        raise fail(f"--output: cannot write {path}: the folder {path.parent} does not exist")


def export_calls(
    store: SqlStore, window: Window, filters: Filters, *, format_: str, target: IO[str] | Path
) -> Exported:
    """Write every readable call of the window matching the filters; say how many."""
    pages = Queries(store.engine, name=store.name).raw_calls(window, filters)
    if not isinstance(target, Path):
        if format_ == "parquet":
            raise ValueError("parquet needs a file path")
        written = EXPORTERS[format_](pages, target)
        return Exported(written, pages.skipped_rows)
    try:
        check_target(target)
        if format_ == "parquet":
            written = _write_parquet(pages, target)
        else:
            with target.open("w", encoding="utf-8", newline="") as handle:
                written = EXPORTERS[format_](pages, handle)
    except OSError as exc:
        # A folder made or removed since the check, no permission, a full disk.
        reason = exc.strerror or str(exc).splitlines()[0]
        raise fail(f"--output: cannot write {target}: {reason}") from None
    return Exported(written, pages.skipped_rows)
