"""The SQL sums `collect` runs: over usable rows only, counting the rest, in a form that never overflows.

A row is *usable* for an answer when every value the answer's sums read is within
`aivitals.store.bounds` (`usable_call`, `usable_rollup`): a summary reads them all, a spend view
only the cost. A store written by this version holds no other row; one written by an older
version, or by hand, may (a latency of 1.8e308 ms, a token count of 2^62).

The fast form is the plain sums, plus one more: how many rows of each group are not usable. When
that is zero everywhere, as it is in any store this version wrote, the sums stand: the check
costs one condition per row, and changes neither the plan nor the order SQLite groups in.

When some group holds unusable rows, or a plain sum overflows (SQLite's SUM fails on a 64-bit
overflow, PostgreSQL on a float one; an unusable row's value, or in principle very many usable
ones), the query runs again in its *safe* form (`safe_columns`): every value guarded by the
usable condition, and every integer sum split into its high and low 32 bits, summed apart and
joined in Python (`join_safe`), exact, and good for 2^31 rows at the 64-bit maximum. It costs a
condition per sum per row, and runs only then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from aivitals.store import bounds
from aivitals.store.rollup import SUM_FIELDS
from aivitals.store.schema import calls, model_rollups, rollups, user_rollups

Kind = Literal["count", "int", "float"]

_HALF = 2**32
_TOKENS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
FLOAT_SUMS = ("latency_sum_ms", "ttft_sum_ms", "speed_sum")


@dataclass(frozen=True, slots=True)
class SumOf:
    """One sum: ``count`` counts the rows where ``value`` (a condition; None: every row) holds,
    ``int`` and ``float`` add up ``value``."""

    kind: Kind
    value: sa.ColumnElement[Any] | None = None


def _within(column: sa.ColumnElement[Any], high: Any) -> sa.ColumnElement[bool]:
    return sa.and_(column >= 0, column <= high)


def _optional(column: sa.ColumnElement[Any], high: float) -> sa.ColumnElement[bool]:
    return sa.or_(column.is_(None), _within(column, high))


def _raw_checks() -> dict[str, list[sa.ColumnElement[bool]]]:
    """The conditions on a ``calls`` row for each sum to use it (NaN and NULL fail them)."""
    c = calls.c
    latency = _within(c.latency_ms, bounds.MAX_DURATION_MS)
    ttft = _optional(c.ttft_ms, bounds.MAX_DURATION_MS)
    output = _within(c.output_tokens, bounds.MAX_TOKENS)
    return {
        "cost_nusd": [_optional(c.cost_nusd, bounds.MAX_COST_NUSD)],
        **{name: [_within(c[name], bounds.MAX_TOKENS)] for name in _TOKENS},
        "latency_sum_ms": [latency],
        "ttft_sum_ms": [ttft],
        "speed_count": [latency, ttft, output],
        "speed_sum": [latency, ttft, output],
    }


def _rolled_checks(table: sa.Table) -> dict[str, list[sa.ColumnElement[bool]]]:
    """The conditions on a ``rollups`` (or user or model rollups) row for each sum to use it: within what as many usable
    calls as the row counts can make. Upper bounds only: no writer, old or new, ever let a
    negative value in (the door always refused them), and these run on every row read.
    Compared as floats, where count * bound never overflows; NaN and NULL fail them."""
    r = table.c

    def most(count: sa.ColumnElement[Any], high: float) -> Any:
        return count * float(high)

    return {
        **{name: [r[name] <= most(r.calls, bounds.MAX_TOKENS)] for name in _TOKENS},
        "cost_nusd": [r.cost_nusd <= most(r.calls - r.unpriced, bounds.MAX_COST_NUSD)],
        "latency_sum_ms": [r.latency_sum_ms <= most(r.calls, bounds.MAX_DURATION_MS)],
        "ttft_sum_ms": [r.ttft_sum_ms <= most(r.ttft_count, bounds.MAX_DURATION_MS)],
        "speed_sum": [r.speed_sum <= most(r.speed_count, bounds.MAX_TOKENS_PER_SECOND)],
    }


_RAW_CHECKS = _raw_checks()
_ROLLUP_TABLES = (rollups, user_rollups, model_rollups)
_ROLLED_CHECKS = {table.name: _rolled_checks(table) for table in _ROLLUP_TABLES}
CHECKED_SUMS = frozenset(_ROLLED_CHECKS["rollups"])
"""The sums a rollup row is checked for: an answer that reads them all leaves out the same rows."""


def usable_call(names: Sequence[str]) -> sa.ColumnElement[bool]:
    """True for a ``calls`` row whose values the sums ``names`` read are all in range."""
    # Keyed by identity: a SQL expression's == builds SQL, it does not compare.
    checks = {id(check): check for name in names for check in _RAW_CHECKS.get(name, ())}
    return sa.and_(sa.true(), *checks.values())


def usable_rollup(names: Sequence[str], table: sa.Table = rollups) -> sa.ColumnElement[bool]:
    """True for a ``rollups`` (or ``user_rollups``) row of at least one call whose sums
    ``names`` are in range."""
    checks = [check for name in names for check in _ROLLED_CHECKS[table.name].get(name, ())]
    return sa.and_(table.c.calls >= 1, *checks)


def _raw_sums() -> dict[str, SumOf]:
    """The sums of `rollup.rollup_rows`, over raw calls (the same rules)."""
    c = calls.c
    generating = c.latency_ms - sa.func.coalesce(c.ttft_ms, 0.0)
    # Written as a product, not a quotient: a generation time of 1e-300 ms must not divide.
    fast = sa.and_(
        c.status == "ok",
        c.output_tokens > 0,
        generating > 0,
        c.output_tokens * (1000.0 / bounds.MAX_TOKENS_PER_SECOND) <= generating,
    )
    return {
        "calls": SumOf("count"),
        "errors": SumOf("count", c.status == "error"),
        "cancelled": SumOf("count", c.status == "cancelled"),
        "unpriced": SumOf("count", c.cost_nusd.is_(None)),
        "cost_nusd": SumOf("int", c.cost_nusd),
        **{name: SumOf("int", c[name]) for name in _TOKENS},
        "cache_hits": SumOf("count", c.cache == "hit"),
        "cache_lookups": SumOf("count", c.cache.in_(("hit", "miss"))),
        "latency_sum_ms": SumOf("float", c.latency_ms),
        "ttft_count": SumOf("count", c.ttft_ms.is_not(None)),
        "ttft_sum_ms": SumOf("float", c.ttft_ms),
        "speed_count": SumOf("count", fast),
        "speed_sum": SumOf(
            "float", sa.case((fast, c.output_tokens * 1000.0 / generating), else_=0.0)
        ),
    }


RAW_SUMS = _raw_sums()


def rolled_sums(table: sa.Table) -> dict[str, SumOf]:
    """The sums of a rollup table's rows: its columns added up."""
    return {
        name: SumOf("float" if name in FLOAT_SUMS else "int", table.c[name]) for name in SUM_FIELDS
    }


ROLLED_SUMS = rolled_sums(rollups)
ROLLED_SUMS_OF = {table.name: rolled_sums(table) for table in _ROLLUP_TABLES}
"""Each rollup table's `rolled_sums`, by table name."""


def fast_columns(specs: dict[str, SumOf], names: Sequence[str]) -> list[sa.ColumnElement[Any]]:
    """One SQL sum per name, to be grouped by the usable flag as well."""
    columns: list[sa.ColumnElement[Any]] = []
    for name in names:
        spec = specs[name]
        if spec.kind == "count":
            columns.append(_count(spec.value))
        else:
            zero = 0.0 if spec.kind == "float" else 0
            columns.append(sa.func.coalesce(sa.func.sum(spec.value), zero))
    return columns


def safe_columns(
    specs: dict[str, SumOf], names: Sequence[str], usable: sa.ColumnElement[bool]
) -> list[sa.ColumnElement[Any]]:
    """The rows skipped, then each sum over usable rows only; integer sums as two columns."""
    columns: list[sa.ColumnElement[Any]] = [sa.func.sum(sa.case((usable, 0), else_=1))]
    for name in names:
        spec = specs[name]
        if spec.kind == "count":
            condition = usable if spec.value is None else sa.and_(usable, spec.value)
            columns.append(_count(condition))
        elif spec.kind == "float":
            guarded = sa.case((usable, spec.value))
            columns.append(sa.func.coalesce(sa.func.sum(guarded), 0.0))
        else:
            assert spec.value is not None  # every int sum adds up a column
            high = sa.case((usable, spec.value // _HALF))
            low = sa.case((usable, spec.value % _HALF))
            columns.append(sa.func.coalesce(sa.func.sum(high), 0))
            columns.append(sa.func.coalesce(sa.func.sum(low), 0))
    return columns


def join_safe(
    specs: dict[str, SumOf], names: Sequence[str], values: Sequence[Any]
) -> tuple[int, list[Any]]:
    """The rows skipped and one value per name, from a row of `safe_columns`' results."""
    skipped = int(values[0] or 0)
    joined: list[Any] = []
    at = 1
    for name in names:
        if specs[name].kind == "int":
            # SQL divides towards zero and gives the remainder the dividend's sign, so
            # high * 2^32 + low is the value itself, row by row and so in the sum.
            joined.append(int(values[at]) * _HALF + int(values[at + 1]))
            at += 2
        else:
            joined.append(values[at])
            at += 1
    return skipped, joined


def overflowed(exc: sa.exc.DBAPIError) -> bool:
    """Whether a failed query failed because a sum or a product overflowed."""
    if isinstance(exc, sa.exc.DataError):  # PostgreSQL: numeric value out of range
        return True
    return "overflow" in str(exc.orig).lower()


def _count(condition: sa.ColumnElement[Any] | None) -> sa.ColumnElement[Any]:
    if condition is None:
        return sa.func.count()
    return sa.func.sum(sa.case((condition, 1), else_=0))
