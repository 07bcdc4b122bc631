"""How read commands print for programs: JSON and CSV (the tables for people are in
`aivitals.report_tables`, which `aivitals demo` draws too)."""

from __future__ import annotations

import csv
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

Output = Literal["table", "json", "csv"]

_json = msgspec.json.Encoder(decimal_format="number")


def emit(output: Output, document: Any, rows: Sequence[Any]) -> None:
    """JSON: the whole document. CSV: the rows, flattened (``quality.relevance`` columns)."""
    if output == "json":
        sys.stdout.write(_json.encode(_plain(document)).decode() + "\n")
        return
    flat = [_flatten(_plain(row)) for row in rows]
    names: list[str] = []
    for row in flat:
        names.extend(name for name in row if name not in names)
    writer = csv.DictWriter(sys.stdout, fieldnames=names)
    writer.writeheader()
    writer.writerows(flat)


def _plain(value: Any) -> Any:
    """Dataclasses and structs to dicts, recursively; msgspec encodes the rest."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, msgspec.Struct):
        return {name: _plain(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _flatten(row: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(row, dict):
        return {prefix or "value": row}
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, list):
            flat[name] = msgspec.json.encode(value).decode()
        else:
            flat[name] = value
    return flat
