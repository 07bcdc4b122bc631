"""Baselines: what each group's calls looked like over a reference period.

A `Reference` is one or more windows: `trailing` takes the same hours of each of the previous
days (the last hour now against the same hour on each of the 7 days before, so a busy afternoon
is compared with other afternoons), `pinned` one stored period (``aivitals baseline pin``).
`profiles` reads, per group of ``by`` values, over those windows:

- the distributions of latency and time to first token, merged from the rollups' sketches
  (`aivitals.store.sketch`, 1% relative bins), with raw calls read only at the windows' ragged
  minute edges: a baseline over months reads day rollups, and costs what a summary costs;
- the distributions of input tokens, output tokens and cost per call, binned the same way from the
  raw calls (the rollups keep only their sums), read whole up to `RAW_CAP` calls and beyond that
  as a sample spread evenly through the period (`Profile.sampled` says so);
- calls, and errors by type, from the rollups (`aivitals.query.collect`);
- the evaluators' scores (refusal, empty, truncated, json_valid, pii_leak: their mean is the rate)
  from `aivitals.query.quality.score_sums`.

Distributions are of successful calls: a failure's latency and its zero output tokens belong to
the error rate, which is a signal of its own.

>>> from datetime import UTC, datetime, timedelta
>>> now = datetime(2026, 11, 8, 12, tzinfo=UTC)
>>> ref = trailing(Window(now - timedelta(hours=1), now), days=2)
>>> [w.start.isoformat() for w in ref.windows]
['2026-11-06T11:00:00+00:00', '2026-11-07T11:00:00+00:00']
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from aivitals.query.collect import collect
from aivitals.query.distribution import usable_sketches
from aivitals.query.errors import QueryError
from aivitals.query.filters import Filters, call_conditions, needs_calls, rollup_conditions
from aivitals.query.plan import Plan, cover
from aivitals.query.quality import score_sums
from aivitals.query.sums import usable_call
from aivitals.query.window import Window
from aivitals.store.schema import calls, rollups
from aivitals.store.schema import scores as scores_table
from aivitals.store.sketch import MAPPING, MIN_VALUE, Sketch

GroupKey = tuple[str | None, ...]
"""The values of the ``by`` fields (None: absent)."""

DISTRIBUTIONS = ("latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cost_usd")
"""The distribution signals, each of successful calls."""
SKETCHED = ("latency_ms", "ttft_ms")
"""Those the rollups keep sketches of."""
EVALUATOR_SCORES = ("refusal", "empty", "truncated", "json_valid", "pii_leak")
"""The built-in evaluators' 0/1 scores (source evaluator), whose mean is a rate."""
RAW_CAP = 20_000
"""Raw calls read at most per reference for the token and cost distributions; beyond, a sample.
Twenty thousand calls pin a distribution's deciles to within about half a percentage point of
their share, far finer than the bands drift judges by, and reading them costs a tenth of a
second where a week of a busy store's calls would cost seconds."""
SLICES = 64
"""A sample is read as this many equal slices of time over the reference (at least 8 a window),
the first calls of each, its share of the cap."""
COST_SCALE = 1e-3
"""Costs are binned in micro-dollars (nano-dollars times this): a 1% bin of a cost of 1e-9 USD
and up, the sketch's smallest value being 1e-3."""

_GAMMA_LOG = float(np.log(MAPPING.gamma))
_RAW_COLUMNS = ("latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cost_nusd")


@dataclass(frozen=True, slots=True)
class Reference:
    """The windows a baseline is read over, and how it is named in answers."""

    label: str
    windows: tuple[Window, ...]

    def __post_init__(self) -> None:
        if not self.windows:
            raise QueryError("baseline", "a baseline needs at least one window")


def trailing(current: Window, days: int = 7) -> Reference:
    """The same hours as ``current`` on each of the ``days`` days before it, oldest first."""
    if not 1 <= days <= 366:
        raise QueryError("baseline", f"a trailing baseline is 1 to 366 days, not {days}")
    span = current.end - current.start
    if span > timedelta(days=1):
        raise QueryError(
            "window",
            "a window longer than a day has no 'same hours' the days before; "
            "pin a baseline instead (aivitals baseline pin)",
        )
    windows = tuple(
        Window(current.start - timedelta(days=d), current.end - timedelta(days=d))
        for d in range(days, 0, -1)
    )
    return Reference(f"trailing {days}d, same hours", windows)


def pinned(name: str, window: Window) -> Reference:
    """One stored period, ``aivitals baseline pin``'s."""
    return Reference(f"pinned {name}", (window,))


def resolve(
    connection: sa.Connection, current: Window, baseline: Reference | str = "7d"
) -> Reference:
    """A `Reference` from what a command or a rule says: ``7d`` (trailing days, same hours), or
    ``pinned:NAME`` (a stored pin), or a `Reference` as it is."""
    if isinstance(baseline, Reference):
        return baseline
    text = baseline.strip()
    if text.startswith("pinned:"):
        from aivitals.store.baselines import find_pin  # noqa: PLC0415  # the store's side

        name = text.removeprefix("pinned:")
        found = find_pin(connection, name)
        if found is None:
            raise QueryError(
                "pinned", f"no pinned baseline {name!r}; pin one with aivitals baseline pin"
            )
        return pinned(name, Window(_at(found.since_ms), _at(found.until_ms)))
    match = re.fullmatch(r"(\d{1,3})d", text)
    if not match:
        raise QueryError(
            "baseline", f"cannot read {text[:40]!r}; use a number of days like 7d, or pinned:NAME"
        )
    return trailing(current, int(match.group(1)))


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(slots=True)
class Profile:
    """One group's calls over a reference: counts, errors by type, distributions, scores."""

    calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    """Error type to failed calls ('other' for a failure without a type)."""
    distributions: dict[str, Sketch] = field(default_factory=dict)
    samples: dict[str, list[npt.NDArray[np.float64]]] = field(default_factory=dict)
    """Raw values of each distribution signal, in pieces (for a two-sample test when few), in
    the bins' unit: costs in micro-dollars."""
    sampled: bool = False
    """Whether the raw values (tokens, cost, `samples`) are a sample, not every call."""
    scores: dict[str, tuple[float, int]] = field(default_factory=dict)
    """Evaluator score name to (sum, count)."""

    def distribution(self, signal: str) -> Sketch:
        return self.distributions.get(signal) or Sketch()

    def values(self, signal: str) -> npt.NDArray[np.float64]:
        pieces = self.samples.get(signal)
        return np.concatenate(pieces) if pieces else np.zeros(0)


def profiles(
    connection: sa.Connection,
    reference: Reference | Sequence[Window],
    filters: Filters,
    by: Sequence[str] = (),
    *,
    raw_cap: int = RAW_CAP,
    scores: bool = True,
) -> dict[GroupKey, Profile]:
    """Each group's `Profile` over the reference's windows (see the module's docstring)."""
    windows = reference.windows if isinstance(reference, Reference) else tuple(reference)
    # No evaluator score since the reference began, none to read: skip the join of scores to
    # calls, the dearest read here (a score is created at or after its call).
    scores = scores and _evaluated_since(connection, min(w.start_ms for w in windows))
    found: dict[GroupKey, Profile] = {}
    counted = [_counts(connection, window, filters, by, found) for window in windows]
    total = sum(counted)
    for window, in_window in zip(windows, counted, strict=True):
        _sketches(connection, window, filters, by, found)
        share = raw_cap * in_window // total if total else 0
        # A statement per slice: fewer per window when there are many windows (a trailing week).
        slices = max(8, SLICES // len(windows))
        _raw(
            connection,
            window,
            filters,
            by,
            found,
            share=share if in_window > share else None,
            slices=slices,
        )
        if scores:
            for key, named in score_sums(connection, window, filters, by).items():
                profile = found.setdefault(key, Profile())
                for name in EVALUATOR_SCORES:
                    if name in named:
                        before = profile.scores.get(name, (0.0, 0))
                        total_value, count = named[name]
                        profile.scores[name] = (before[0] + total_value, before[1] + count)
    return found


def _evaluated_since(connection: sa.Connection, start_ms: int) -> bool:
    """Whether any evaluator score was created at or after ``start_ms`` (an index range)."""
    query = (
        sa.select(scores_table.c.id)
        .where(
            scores_table.c.created_ms >= start_ms,
            scores_table.c.name.in_(EVALUATOR_SCORES),
        )
        .limit(1)
    )
    return connection.execute(query).first() is not None


def _counts(
    connection: sa.Connection,
    window: Window,
    filters: Filters,
    by: Sequence[str],
    found: dict[GroupKey, Profile],
) -> int:
    """Add the window's calls and errors by type per group; return its calls."""
    totals = collect(
        connection,
        (window.start_ms, window.end_ms),
        filters,
        (*by, "error_type"),
        percentiles=False,
        sums=("calls", "errors"),
    )
    in_window = 0
    for gid, key in enumerate(totals.keys):
        group: GroupKey = tuple(key[1 : 1 + len(by)])
        profile = found.setdefault(group, Profile())
        n = int(totals.ints["calls"][gid])
        errors = int(totals.ints["errors"][gid])
        profile.calls += n
        in_window += n
        if errors:
            kind = key[-1] or "other"
            profile.errors[kind] = profile.errors.get(kind, 0) + errors
    return in_window


def _plan(window: Window, filters: Filters, by: Sequence[str]) -> Plan:
    if needs_calls(filters, by):
        return Plan(raw=((window.start_ms, window.end_ms),), rolled=())
    return cover((window.start_ms, window.end_ms))


def _sketches(
    connection: sa.Connection,
    window: Window,
    filters: Filters,
    by: Sequence[str],
    found: dict[GroupKey, Profile],
) -> None:
    """Merge the successful calls' latency and TTFT sketches of the window's rollup rows, and
    bin its raw edge calls the same way."""
    plan = _plan(window, filters, by)
    if plan.rolled:
        ranges = [
            sa.and_(
                rollups.c.granularity == g, rollups.c.bucket_start >= a, rollups.c.bucket_start < b
            )
            for g, a, b in plan.rolled
        ]
        query = sa.select(
            *(rollups.c[name] for name in by), rollups.c.latency_sketch, rollups.c.ttft_sketch
        ).where(sa.or_(*ranges), rollups.c.status == "ok", *rollup_conditions(filters))
        rows = connection.execute(query).all()
        if rows:
            columns = list(zip(*rows, strict=True))
            keys = list(zip(*columns[: len(by)], strict=True)) if by else [()] * len(rows)
            for signal, blobs in zip(SKETCHED, columns[len(by) :], strict=True):
                usable = usable_sketches(blobs)
                for key, merged in _merge_by_key(keys, blobs, usable).items():
                    profile = found.setdefault(key, Profile())
                    profile.distributions.setdefault(signal, Sketch()).merge(merged)
    if plan.raw:
        started = calls.c.started_ms
        query = sa.select(
            *(calls.c[name] for name in by), calls.c.latency_ms, calls.c.ttft_ms
        ).where(
            sa.or_(*(sa.and_(started >= a, started < b) for a, b in plan.raw)),
            calls.c.status == "ok",
            usable_call(("latency_sum_ms", "ttft_sum_ms")),
            *call_conditions(filters),
        )
        rows = connection.execute(query).all()
        _bin_rows(rows, by, SKETCHED, found, scale=(1.0, 1.0), binned_signals=SKETCHED)


def _merge_by_key(
    keys: list[tuple[Any, ...]], blobs: Sequence[bytes | None], usable: npt.NDArray[np.bool_]
) -> dict[GroupKey, Sketch]:
    """The stored sketches merged per group key (rows whose sketch is out of range left out)."""
    grouped: dict[GroupKey, list[bytes]] = {}
    for key, blob, ok in zip(keys, blobs, usable.tolist(), strict=True):
        if blob and ok:
            grouped.setdefault(tuple(value or None for value in key), []).append(blob)
    return {key: merge_blobs(group) for key, group in grouped.items()}


def merge_blobs(blobs: Sequence[bytes]) -> Sketch:
    """Many stored sketches (`Sketch.to_bytes`) merged at once.

    Vectorised rather than `Sketch.merge` one by one: a trailing week of hours reads thousands of
    minute rollups per group, and merging them one at a time was most of a drift answer.

    >>> merge_blobs([Sketch.of([1.0, 5.0]).to_bytes(), Sketch.of([5.0, 0.0]).to_bytes()]).count
    4
    """
    if not blobs:
        return Sketch()
    sizes = np.fromiter(map(len, blobs), np.int64, len(blobs)) // 4
    words = np.frombuffer(b"".join(blobs), "<u4")
    starts = np.cumsum(sizes) - sizes
    offsets = words[starts].view(np.int32).astype(np.int64)
    zeros = int(words[starts + 1].sum())
    bins = sizes - 2
    has = bins > 0
    if not has.any():
        return Sketch(zeros=zeros)
    low = int(offsets[has].min())
    high = int((offsets[has] + bins[has] - 1).max())
    # Word j of blob b counts key offsets[b] + (j - starts[b] - 2); its two header words do not.
    cells = np.arange(words.size) + np.repeat(offsets - low - starts - 2, sizes)
    counted = np.ones(words.size, np.bool_)
    counted[starts] = False
    counted[starts + 1] = False
    counts = np.bincount(cells[counted], weights=words[counted], minlength=high - low + 1)
    return Sketch(low, counts.astype(np.int64), zeros)


def _raw(
    connection: sa.Connection,
    window: Window,
    filters: Filters,
    by: Sequence[str],
    found: dict[GroupKey, Profile],
    *,
    share: int | None,
    slices: int = SLICES,
) -> None:
    """Bin the successful calls' tokens and cost (and keep every raw value for the tests);
    ``share``, when given, is how many to read as a sample spread evenly over the window."""
    selected = [
        *(calls.c[name] for name in by),
        *(calls.c[name] for name in _RAW_COLUMNS),
    ]
    conditions = [
        calls.c.status == "ok",
        usable_call(("latency_sum_ms", "ttft_sum_ms", "input_tokens", "output_tokens")),
        usable_call(("cost_nusd",)),
        *call_conditions(filters),
    ]
    started = calls.c.started_ms
    if share is None:
        query = sa.select(*selected).where(
            started >= window.start_ms, started < window.end_ms, *conditions
        )
        rows = connection.execute(query).all()
    else:
        # Equal slices of time, the first calls of each: index ranges, however long the window.
        # Weighted by time rather than by traffic, which a baseline of months can afford.
        rows = []
        edges = np.linspace(window.start_ms, window.end_ms, slices + 1).astype(np.int64).tolist()
        each = max(1, share // slices)
        for low, high in itertools.pairwise(edges):
            query = (
                sa.select(*selected)
                .where(started >= low, started < high, *conditions)
                # The id breaks ties: engines return tied rows in storage order, which differs
                # between SQLite and PostgreSQL and after a copy; the sample must not.
                .order_by(started, calls.c.id)
                .limit(each)
            )
            rows.extend(connection.execute(query).all())
    # Latency and TTFT are binned from the sketches; their raw values are kept for a test.
    groups = _bin_rows(
        rows,
        by,
        DISTRIBUTIONS,
        found,
        scale=(1.0, 1.0, 1.0, 1.0, COST_SCALE),
        binned_signals=("input_tokens", "output_tokens", "cost_usd"),
        keep_samples=True,
    )
    if share is not None:
        for key in groups:
            found[key].sampled = True


def _bin_rows(
    rows: Sequence[Any],
    by: Sequence[str],
    signals: Sequence[str],
    found: dict[GroupKey, Profile],
    *,
    scale: Sequence[float],
    binned_signals: Sequence[str],
    keep_samples: bool = False,
) -> set[GroupKey]:
    """Raw rows (by values, then one value per signal, times its ``scale``): the
    ``binned_signals`` added to each group's sketches, every value kept as a sample when
    ``keep_samples``. Returns the groups seen."""
    if not rows:
        return set()
    columns = list(zip(*rows, strict=True))
    stored = zip(*columns[: len(by)], strict=True) if by else itertools.repeat((), len(rows))
    seen: dict[tuple[Any, ...], int] = {}
    first = np.fromiter((seen.setdefault(k, len(seen)) for k in stored), np.int64, len(rows))
    # '' and NULL both mean absent: the distinct stored keys folded into their groups.
    codes: dict[GroupKey, int] = {}
    folded = [codes.setdefault(tuple(v or None for v in k), len(codes)) for k in seen]
    ids = np.asarray(folded, np.int64)[first]
    for signal, values, factor in zip(signals, columns[len(by) :], scale, strict=True):
        array = np.asarray(values, np.float64)  # NULL (None) reads as NaN
        array *= factor
        keep = ~np.isnan(array)
        for key, code in codes.items():
            chosen = array[(ids == code) & keep]
            if chosen.size == 0:
                continue
            profile = found.setdefault(key, Profile())
            if signal in binned_signals:
                profile.distributions.setdefault(signal, Sketch()).merge(binned(chosen))
            if keep_samples:
                profile.samples.setdefault(signal, []).append(chosen)
    return set(codes)


def binned(values: npt.NDArray[np.float64]) -> Sketch:
    """Values of any magnitude in the sketch's 1% bins (`Sketch.of` holds durations only)."""
    small = values < MIN_VALUE
    rest = values[~small]
    if rest.size == 0:
        return Sketch(zeros=int(small.sum()))
    keys = np.ceil(np.log(rest) / _GAMMA_LOG).astype(np.int64)
    low = int(keys.min())
    return Sketch(low, np.bincount(keys - low).astype(np.int64), int(small.sum()))
