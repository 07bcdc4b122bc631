"""Pinned baselines: named reference periods for drift, kept in the store's ``baselines`` table.

In the store rather than in a file beside it, so a PostgreSQL store shared by replicas, the
read API and ``aivitals drift --pinned`` all see the same pins.

>>> import sqlalchemy as sa
>>> from aivitals.store.schema import metadata
>>> engine = sa.create_engine("sqlite://")
>>> metadata.create_all(engine)
>>> pin(engine, "before-upgrade", 1_000, 2_000, now_ms=5_000)
Pin(name='before-upgrade', since_ms=1000, until_ms=2000, created_ms=5000)
>>> [p.name for p in list_pins(engine)], delete_pin(engine, "before-upgrade"), find_pin(engine, "x")
(['before-upgrade'], True, None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from aivitals.store.errors import StoreError
from aivitals.store.schema import baselines

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True, slots=True)
class Pin:
    """A named period [since_ms, until_ms) in epoch milliseconds."""

    name: str
    since_ms: int
    until_ms: int
    created_ms: int


def check_name(name: str) -> str:
    """The name, or ValueError saying what a name may hold."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"cannot use {name[:40]!r} as a baseline name: use letters, digits, '.', '_' and "
            "'-', starting with a letter or digit, at most 200 characters"
        )
    return name


def pin(engine: sa.Engine, name: str, since_ms: int, until_ms: int, *, now_ms: int) -> Pin:
    """Store (or replace) the pin ``name``."""
    check_name(name)
    if until_ms <= since_ms:
        raise ValueError("a baseline's --until must be after its --since")
    found = Pin(name, since_ms, until_ms, now_ms)
    try:
        with engine.begin() as connection:
            connection.execute(sa.delete(baselines).where(baselines.c.name == name))
            connection.execute(
                sa.insert(baselines).values(
                    name=name, since_ms=since_ms, until_ms=until_ms, created_ms=now_ms
                )
            )
    except sa.exc.DBAPIError as exc:
        raise StoreError(f"could not pin baseline {name!r}: {exc.orig}") from exc
    return found


def list_pins(engine: sa.Engine | sa.Connection) -> list[Pin]:
    """Every pin, by name."""
    query = sa.select(
        baselines.c.name, baselines.c.since_ms, baselines.c.until_ms, baselines.c.created_ms
    ).order_by(baselines.c.name)
    return [Pin(str(a), int(b), int(c), int(d)) for a, b, c, d in _run(engine, query)]


def find_pin(engine: sa.Engine | sa.Connection, name: str) -> Pin | None:
    """The pin ``name``, or None."""
    query = sa.select(
        baselines.c.name, baselines.c.since_ms, baselines.c.until_ms, baselines.c.created_ms
    ).where(baselines.c.name == name)
    rows = _run(engine, query)
    if not rows:
        return None
    a, b, c, d = rows[0]
    return Pin(str(a), int(b), int(c), int(d))


def delete_pin(engine: sa.Engine, name: str) -> bool:
    """Remove the pin ``name``; False when there was none."""
    with engine.begin() as connection:
        deleted = connection.execute(sa.delete(baselines).where(baselines.c.name == name))
    return bool(deleted.rowcount)


def _run(engine: sa.Engine | sa.Connection, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    if isinstance(engine, sa.Connection):
        return [tuple(row) for row in engine.execute(query)]
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]
