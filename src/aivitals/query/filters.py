"""What a query keeps and groups by: `Filters`, ``--where`` and ``--by``.

>>> parse_where(["team=search", "model=gpt-4o"])
Filters(model='gpt-4o', provider=None, feature=None, team='search', user=None, prompt_version=None, environment=None, status=None, error_type=None, operation=None, service_tier=None, quantization=None)
>>> check_by(["model", "team"])
('model', 'team')

An empty value keeps the calls where the field is absent: ``feature=`` finds unattributed calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from aivitals.model import ERROR_TYPES, OPERATIONS, STATUSES
from aivitals.query.errors import QueryError
from aivitals.store.schema import (
    MODEL_ROLLUP_KEYS,
    ROLLUP_KEYS,
    USER_ROLLUP_KEYS,
    calls,
    rollups,
)

FIELDS = (
    "model",
    "provider",
    "feature",
    "team",
    "user",
    "prompt_version",
    "environment",
    "status",
    "error_type",
    "operation",
    "service_tier",
    "quantization",
)
"""The fields every query can filter and group by."""

_CHOICES = {"status": STATUSES, "error_type": ERROR_TYPES, "operation": OPERATIONS}
_ALLOWED = ", ".join(FIELDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """Keep only the calls whose fields equal these values; ``None`` keeps every value.

    >>> Filters(team="search").items()
    [('team', 'search')]
    """

    model: str | None = None
    provider: str | None = None
    feature: str | None = None
    team: str | None = None
    user: str | None = None
    prompt_version: str | None = None
    environment: str | None = None
    status: str | None = None
    error_type: str | None = None
    operation: str | None = None
    service_tier: str | None = None
    quantization: str | None = None

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value and value not in allowed:
                raise QueryError(
                    "where",
                    f"{name} has no value {value!r}; use one of {', '.join(sorted(allowed))}",
                )

    def items(self) -> list[tuple[str, str]]:
        """The fields that are set, with their values, in `FIELDS` order."""
        return [(name, value) for name in FIELDS if (value := getattr(self, name)) is not None]


def parse_where(items: Sequence[str]) -> Filters:
    """`Filters` from ``FIELD=VALUE`` strings, as ``--where`` gives them."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise QueryError("where", f"cannot read {item!r}; use FIELD=VALUE, e.g. team=search")
        if name not in FIELDS:
            raise QueryError("where", f"unknown field {name!r}; use one of {_ALLOWED}")
        if name in values:
            raise QueryError("where", f"{name} is given twice; give each field once")
        if "\x00" in value:
            # No stored value holds one, and PostgreSQL refuses it in a query outright.
            raise QueryError("where", f"the value of {name} holds a NUL character; remove it")
        values[name] = value.strip()
    return Filters(**values)


def check_by(names: Sequence[str]) -> tuple[str, ...]:
    """The ``--by`` fields, checked and without repeats, in the order given."""
    for name in names:
        if name not in FIELDS:
            raise QueryError("by", f"unknown field {name!r}; use one of {_ALLOWED}")
    return tuple(dict.fromkeys(names))


def needs_calls(filters: Filters, by: Sequence[str] = ()) -> bool:
    """True when only raw calls can answer: a filter or a group is not a rollup dimension."""
    return any(name not in ROLLUP_KEYS for name, _ in filters.items()) or any(
        name not in ROLLUP_KEYS for name in by
    )


def user_rolled(filters: Filters, by: Sequence[str] = ()) -> bool:
    """True when the user rollups can answer and the others cannot: ``user`` is a filter or a
    group, and every filter and group is a user rollup dimension (user, provider, model)."""
    names = {name for name, _ in filters.items()} | set(by)
    return "user" in names and names <= set(USER_ROLLUP_KEYS)


def model_rolled(filters: Filters, by: Sequence[str] = ()) -> bool:
    """True when the model rollups hold every filter and group: none, or only provider and
    model (which sums they can answer is `aivitals.query.collect`'s to judge)."""
    names = {name for name, _ in filters.items()} | set(by)
    return names <= set(MODEL_ROLLUP_KEYS)


def call_conditions(
    filters: Filters, *, use_indexes: bool = True
) -> Iterator[sa.ColumnElement[bool]]:
    """SQL conditions on ``calls`` for the filters (absent values are NULL or '').

    ``use_indexes=False`` writes them so that no index can serve them (``model || ''``), which
    keeps a join driven from its other side.
    """
    for name, value in filters.items():
        column: sa.ColumnElement[Any] = calls.c[name] if use_indexes else calls.c[name] + ""
        yield sa.or_(column.is_(None), column == "") if value == "" else column == value


def rollup_conditions(
    filters: Filters, table: sa.Table = rollups
) -> Iterator[sa.ColumnElement[bool]]:
    """SQL conditions on ``rollups`` (or the user or model rollups) for the filters (absent
    values are stored as '')."""
    for name, value in filters.items():
        yield table.c[name] == value
