"""Two groups of calls side by side: is prompt version B better or worse than A?

`compare` reads, for the calls of a window whose ``by`` field is A and those where it is B:
their latency (a bounded sample, below), error rate, cost and tokens per call, the refusal rate
(the mean of the ``refusal`` evaluator's scores) and every other score's mean, and hands them to
`aivitals.query.compare_stats` for the differences, intervals, tests and verdicts.

Rates and means are exact: the store sums them over every call of each group. Latency tests need
the latencies themselves, so each group gives at most ``max_latency_samples`` of them: when it
has more, every k-th call in start order (the same calls on every read, spread over the whole
window), and the answer says so (``Group.sampled``).

The figures follow `Measures`: latency and tokens per call over every call, cost per call over
the priced ones, the error rate as the share of calls with status ``error``, a score's mean over
the scores of the group's calls. Stored rows with a value out of range are left out and counted.

>>> import sqlalchemy as sa
>>> from datetime import UTC, datetime
>>> from aivitals.store.schema import metadata
>>> from aivitals.query.window import parse_since
>>> engine = sa.create_engine("sqlite://")
>>> metadata.create_all(engine)
>>> window = parse_since("7d", now=datetime(2026, 11, 3, tzinfo=UTC))
>>> with engine.connect() as connection:
...     found = compare(connection, window, Filters(), "prompt_version", a="v1", b="v2")
>>> [(m.name, m.verdict) for m in found.measures][:2]
[('latency_p50_ms', 'not enough data'), ('latency_p95_ms', 'not enough data')]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import sqlalchemy as sa

from aivitals.query.compare_stats import (
    ALPHA,
    MIN_SAMPLES,
    Measure,
    Moments,
    Samples,
    Worse,
    judged,
    latency,
    mean,
    rate,
)
from aivitals.query.errors import QueryError
from aivitals.query.filters import Filters, call_conditions, check_by
from aivitals.query.window import Window
from aivitals.store.bounds import MAX_COST_NUSD, MAX_DURATION_MS, MAX_SCORE_MAGNITUDE, MAX_TOKENS
from aivitals.store.schema import calls, scores

MAX_LATENCY_SAMPLES = 5000
"""Latencies read per group at most; the bootstrap of 5,000 a group takes about 0.4 s."""
MAX_SCORE_NAMES = 50
"""Scores compared at most, the most frequent first."""
REFUSAL = "refusal"
"""The evaluator score whose mean is the refusal rate."""
LOWER_IS_BETTER = frozenset({"empty", "truncated", "refusal", "pii_leak"})
"""Scores where 1 is the bad outcome (the built-in evaluators); any other score is better higher
(``json_valid``, the judge's criteria, scores applications send)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """One side of the comparison."""

    value: str
    """The ``by`` field's value ('' for calls without one)."""
    calls: int
    latency_samples: int
    """Latencies the latency tests read: every call's, or a sample when `sampled`."""
    sampled: bool
    every: int = 1
    """When sampled, one call in this many (in start order)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """Group B against group A over one window, measure by measure."""

    by: str
    a: Group
    b: Group
    chosen: bool
    """True when A and B were not given: the two most frequent values, the earlier seen as A."""
    measures: list[Measure] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    """Names of the measures where B is significantly worse than A."""
    improvements: list[str] = field(default_factory=list)
    alpha: float = ALPHA
    min_samples: int = MIN_SAMPLES
    max_latency_samples: int = MAX_LATENCY_SAMPLES
    sampled: bool = False
    """Whether either group's latency was sampled."""
    skipped_rows: int = 0
    """Stored calls and scores left out because a value in them is out of range."""


def compare(
    connection: sa.Connection,
    window: Window,
    filters: Filters,
    by: str,
    *,
    a: str | None = None,
    b: str | None = None,
    min_samples: int = MIN_SAMPLES,
    max_latency_samples: int = MAX_LATENCY_SAMPLES,
    alpha: float = ALPHA,
) -> Comparison:
    """B against A, where A and B are values of the field ``by`` (both, or neither: then the two
    most frequent values in the window). ``filters`` narrow both groups alike."""
    field_name = _one_field(by)
    if getattr(filters, field_name) is not None:
        raise QueryError("where", f"{field_name} is the field compared by; leave it out of where")
    if min_samples < 2:
        raise QueryError("min_samples", f"must be 2 or more, not {min_samples}")
    if max_latency_samples < min_samples:
        # Latency could then never have enough: its sample stops at max_latency_samples.
        raise QueryError(
            "min_samples", f"must be at most {max_latency_samples:,}, the latencies read a side"
        )
    chosen = a is None and b is None
    if a is None and b is None:
        a, b = _two_most_frequent(connection, window, filters, field_name)
    elif a is None or b is None:
        raise QueryError("b" if b is None else "a", "give both A and B, or neither")
    if a == b:
        raise QueryError("b", f"A and B are both {a!r}; compare two different values")
    sides = _sides(
        connection,
        window=window,
        filters=filters,
        field_name=field_name,
        values=(a, b),
        max_latency_samples=max_latency_samples,
    )
    (group_a, read_a), (group_b, read_b) = sides
    measures = judged(_measures(read_a, read_b, min_samples, sides), alpha=alpha)
    return Comparison(
        by=field_name,
        a=group_a,
        b=group_b,
        chosen=chosen,
        measures=measures,
        regressions=[m.name for m in measures if m.verdict == "regression"],
        improvements=[m.name for m in measures if m.verdict == "improvement"],
        alpha=alpha,
        min_samples=min_samples,
        max_latency_samples=max_latency_samples,
        sampled=group_a.sampled or group_b.sampled,
        skipped_rows=read_a.skipped + read_b.skipped,
    )


def _one_field(by: str) -> str:
    fields = check_by([name.strip() for name in by.split(",") if name.strip()])
    if len(fields) != 1:
        raise QueryError("by", f"compare by one field, e.g. prompt_version; got {by[:40]!r}")
    return fields[0]


def _group_filters(filters: Filters, field_name: str, side: str, value: str) -> Filters:
    if "\x00" in value:
        # No stored value holds one, and PostgreSQL refuses it in a query outright.
        raise QueryError(side, "holds a NUL character; remove it")
    try:
        return replace(filters, **{field_name: value})
    except QueryError as exc:
        # Filters names `where`; here the value came as A or B.
        raise QueryError(side, exc.problem) from None


def _two_most_frequent(
    connection: sa.Connection, window: Window, filters: Filters, field_name: str
) -> tuple[str, str]:
    column = calls.c[field_name]
    query = (
        sa.select(column, sa.func.count(), sa.func.min(calls.c.started_ms))
        .where(
            calls.c.started_ms >= window.start_ms,
            calls.c.started_ms < window.end_ms,
            column.is_not(None),
            column != "",
            *call_conditions(filters),
        )
        .group_by(column)
        .order_by(sa.func.count().desc(), column)
        .limit(2)
    )
    found = [(str(value), int(first)) for value, _, first in connection.execute(query)]
    if len(found) < 2:
        seen = f"only {found[0][0]!r}" if found else "no value"
        raise QueryError(
            "by",
            f"{field_name} takes {seen} among the window's calls: give A and B, widen since, "
            "or compare by another field",
        )
    # The one seen first is A, so that B - A reads as "what changed" for a new version.
    (first, _), (second, _) = sorted(found, key=lambda item: (item[1], item[0]))
    return first, second


@dataclass(slots=True)
class _Read:
    """What one group's reads gave."""

    calls: int = 0
    errors: int = 0
    cost: Moments = field(default_factory=lambda: Moments(n=0, mean=None, variance=None))
    input_tokens: Moments = field(default_factory=lambda: Moments(n=0, mean=None, variance=None))
    output_tokens: Moments = field(default_factory=lambda: Moments(n=0, mean=None, variance=None))
    latencies: Samples = field(default_factory=lambda: np.zeros(0))
    scores: dict[str, tuple[Moments, bool]] = field(default_factory=dict)
    """Score name to its moments and whether every value is 0 or 1."""
    skipped: int = 0


def _sides(
    connection: sa.Connection,
    *,
    window: Window,
    filters: Filters,
    field_name: str,
    values: tuple[str, str],
    max_latency_samples: int,
) -> list[tuple[Group, _Read]]:
    """Both groups' sums from one pass over the window's calls, then each one's latencies."""
    groups = [
        _group_filters(filters, field_name, side, value)
        for side, value in zip(("a", "b"), values, strict=True)
    ]
    in_window = [calls.c.started_ms >= window.start_ms, calls.c.started_ms < window.end_ms]
    # Absent is NULL or '' (as in `Filters`): both are the value ''.
    key = sa.func.coalesce(calls.c[field_name], "")
    both = [*in_window, *call_conditions(filters), key.in_(values)]
    reads = _sums(connection, both, key)
    scored, skipped = _score_sums(connection, both, key)
    sides = []
    for value, group in zip(values, groups, strict=True):
        read = reads.get(value) or _Read()
        read.scores = scored.get(value, {})
        read.skipped += skipped.get(value, 0)
        every = max(1, math.ceil(read.calls / max_latency_samples))
        where = [*in_window, *call_conditions(group)]
        read.latencies = _latencies(connection, where, every, max_latency_samples)
        sides.append(
            (
                Group(
                    value=value,
                    calls=read.calls,
                    latency_samples=len(read.latencies),
                    sampled=every > 1,
                    every=every,
                ),
                read,
            )
        )
    return sides


def _usable() -> sa.ColumnElement[bool]:
    """A stored call whose figures are in range (`aivitals.store.bounds`)."""
    return sa.and_(
        calls.c.latency_ms.between(0, MAX_DURATION_MS),
        calls.c.input_tokens.between(0, MAX_TOKENS),
        calls.c.output_tokens.between(0, MAX_TOKENS),
        sa.or_(calls.c.cost_nusd.is_(None), calls.c.cost_nusd.between(0, MAX_COST_NUSD)),
    )


def _float(column: sa.ColumnElement[Any]) -> sa.ColumnElement[float]:
    # As floats: squares of nano-dollars and token counts overflow 64-bit integer sums.
    return sa.cast(column, sa.Float)


def _sums(
    connection: sa.Connection, where: list[sa.ColumnElement[bool]], key: sa.ColumnElement[str]
) -> dict[str, _Read]:
    usable = _usable()
    priced = sa.and_(usable, calls.c.cost_nusd.is_not(None))
    columns: list[sa.ColumnElement[Any]] = [
        key,
        sa.func.count(),
        sa.func.count(sa.case((usable, 1))),
        sa.func.count(sa.case((sa.and_(usable, calls.c.status == "error"), 1))),
        sa.func.count(sa.case((priced, 1))),
    ]
    for column, guard in (
        (calls.c.cost_nusd, priced),
        (calls.c.input_tokens, usable),
        (calls.c.output_tokens, usable),
    ):
        value = _float(column)
        columns += [
            sa.func.sum(sa.case((guard, value))),
            sa.func.sum(sa.case((guard, value * value))),
        ]
    found: dict[str, _Read] = {}
    for row in connection.execute(sa.select(*columns).where(*where).group_by(key)):
        stored, kept, errors, priced_calls = (int(x or 0) for x in row[1:5])
        sums = [float(x or 0.0) for x in row[5:]]
        cost = Moments.of_sums(priced_calls, sums[0], sums[1])
        # Nano-dollars to dollars after the arithmetic, so the squares stay well inside a float.
        cost = Moments(
            n=cost.n,
            mean=None if cost.mean is None else cost.mean / 1e9,
            variance=None if cost.variance is None else cost.variance / 1e18,
        )
        found[str(row[0])] = _Read(
            calls=kept,
            errors=errors,
            cost=cost,
            input_tokens=Moments.of_sums(kept, sums[2], sums[3]),
            output_tokens=Moments.of_sums(kept, sums[4], sums[5]),
            skipped=stored - kept,
        )
    return found


def _latencies(
    connection: sa.Connection, where: list[sa.ColumnElement[bool]], every: int, most: int
) -> Samples:
    """Every ``every``-th usable call's latency in (start, id) order, at most ``most``.

    Ranked by the database (a window function: SQLite 3.25 and later, PostgreSQL), which
    returns only the sample: twice as fast as streaming every row to skip most of them here.
    """
    rank = sa.func.row_number().over(order_by=(calls.c.started_ms, calls.c.id)).label("rank")
    ranked = sa.select(calls.c.latency_ms, rank).where(*where, _usable()).subquery()
    query = (
        sa.select(ranked.c.latency_ms)
        .where((ranked.c.rank - 1) % every == 0)
        .order_by(ranked.c.rank)
        .limit(most)
    )
    return np.array([float(x) for x in connection.execute(query).scalars()], dtype=np.float64)


def _score_sums(
    connection: sa.Connection, where: list[sa.ColumnElement[bool]], key: sa.ColumnElement[str]
) -> tuple[dict[str, dict[str, tuple[Moments, bool]]], dict[str, int]]:
    """Per group: score name to its moments and whether every value is 0 or 1 (the
    `MAX_SCORE_NAMES` most frequent); and the scores left out as out of range."""
    usable = sa.func.abs(scores.c.value) <= MAX_SCORE_MAGNITUDE
    value = sa.case((usable, scores.c.value))
    query = (
        sa.select(
            key,
            scores.c.name,
            sa.func.count(value),
            sa.func.sum(value),
            sa.func.sum(value * value),
            sa.func.count(sa.case((sa.and_(usable, scores.c.value.not_in([0.0, 1.0])), 1))),
            sa.func.count(sa.case((usable, None), else_=1)),
        )
        .select_from(scores.join(calls, calls.c.id == scores.c.call_id))
        .where(*where)
        .group_by(key, scores.c.name)
    )
    found: dict[str, dict[str, tuple[Moments, bool]]] = {}
    skipped: dict[str, int] = {}
    rows = sorted(connection.execute(query), key=lambda row: (-int(row[2]), str(row[1])))
    for group, name, n, total, squares, fractional, left_out in rows:
        skipped[str(group)] = skipped.get(str(group), 0) + int(left_out)
        named = found.setdefault(str(group), {})
        if n and len(named) < MAX_SCORE_NAMES:
            moments = Moments.of_sums(int(n), float(total), float(squares))
            named[str(name)] = (moments, int(fractional) == 0)
    return found, skipped


def _measures(
    a: _Read, b: _Read, min_samples: int, sides: list[tuple[Group, _Read]]
) -> list[Measure]:
    sampled = [
        f"{g.latency_samples:,} of {g.calls:,} in {side}"
        for side, (g, _) in zip("AB", sides, strict=True)
        if g.sampled
    ]
    note = f"sampled: {' and '.join(sampled)}" if sampled else None
    measures = [*latency(a.latencies, b.latencies, min_samples=min_samples, note=note)]
    measures.append(
        rate(
            "error_rate",
            (a.errors, a.calls),
            (b.errors, b.calls),
            worse="higher",
            min_samples=min_samples,
        )
    )
    measures.append(_score(REFUSAL, a, b, min_samples, name="refusal_rate"))
    for name, of_a, of_b in (
        ("cost_per_call_usd", a.cost, b.cost),
        ("input_tokens_per_call", a.input_tokens, b.input_tokens),
        ("output_tokens_per_call", a.output_tokens, b.output_tokens),
    ):
        measures.append(mean(name, of_a, of_b, worse="higher", min_samples=min_samples))
    names = sorted((set(a.scores) | set(b.scores)) - {REFUSAL})
    measures.extend(_score(name, a, b, min_samples) for name in names)
    return measures


def _score(score: str, a: _Read, b: _Read, min_samples: int, *, name: str | None = None) -> Measure:
    """A score's mean, as a rate (two-proportion test) when every value is 0 or 1."""
    empty = (Moments(n=0, mean=None, variance=None), True)
    (of_a, binary_a), (of_b, binary_b) = a.scores.get(score, empty), b.scores.get(score, empty)
    worse: Worse = "higher" if score in LOWER_IS_BETTER else "lower"
    label = name or f"score.{score}"
    if binary_a and binary_b:
        # A side without scores of this name counts 0 of 0: "not enough data" says so.
        return rate(
            label,
            (_events(of_a), of_a.n),
            (_events(of_b), of_b.n),
            worse=worse,
            min_samples=min_samples,
            what=f"{score} scores",
        )
    return mean(label, of_a, of_b, worse=worse, min_samples=min_samples, what=f"{score} scores")


def _events(moments: Moments) -> int:
    """How many of a 0-or-1 score's values are 1."""
    return 0 if moments.mean is None else round(moments.mean * moments.n)
