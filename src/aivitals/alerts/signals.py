"""What a rule measures, read from the live windows or from the store.

Each read answers ``{group labels: value}``: one entry per group (one, with no labels, when the
rule has no ``group_by``). A value of None means no call contributed (no calls, no priced calls,
no scores): it never breaches.

Which source answers is the engine's choice (`AlertEngine.read`): the store whenever there is
one, for it holds calls other processes wrote and those from before a restart; else the live
windows, when the rule fits them (`live_fits`: a window of ``today``, ``month`` or at most their
horizon in minutes; filters and groups among provider, model, feature and team, plus error_type
for error rates; quality by model and feature; not ``signal: query``). ``source: live`` or
``source: store`` forces one.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from aivitals.alerts.rules import Rule
from aivitals.metric_schema import EVALUATOR_NAMES
from aivitals.query import Filters, Measures, Queries, Window
from aivitals.windows import LiveWindows, WindowView

Labels = tuple[tuple[str, str], ...]
"""Group labels, sorted by the order of ``group_by`` (then ``error_type`` or ``score``)."""
Readings = dict[Labels, float | None]

LIVE_FIELDS = ("provider", "model", "feature", "team")
_QUALITY_FIELDS = ("model", "feature")


class SignalError(Exception):
    """A rule cannot be read from the source it asks for."""


def live_fits(rule: Rule, live_minutes: int) -> bool:
    """Whether the live windows can answer ``rule`` (see the module's docstring)."""
    if rule.signal == "query":
        return False
    fields = _QUALITY_FIELDS if rule.signal == "quality" else LIVE_FIELDS
    groups = [f for f in rule.group_by if not (rule.signal == "error_rate" and f == "error_type")]
    if any(name not in fields for name in rule.filters) or any(f not in fields for f in groups):
        return False
    seconds = rule.window_s
    return seconds is None or math.ceil(seconds / 60) <= live_minutes


def read_live(rule: Rule, windows: LiveWindows) -> Readings:
    """The rule's value per group, from the live windows."""
    seconds = rule.window_s
    minutes = None if seconds is None else max(1, math.ceil(seconds / 60))
    period = rule.window if seconds is None else None
    by = [f for f in rule.group_by if f in LIVE_FIELDS]
    combos: list[tuple[str, ...]] = [()]
    if by:
        wanted = [(LIVE_FIELDS.index(f), v) for f, v in rule.filters.items()]
        combos = sorted(
            {
                tuple(key[LIVE_FIELDS.index(f)] for f in by)
                for key in windows.keys(minutes=minutes, period=period)
                if all(key[i] == v for i, v in wanted)
            }
        )
    readings: Readings = {}
    for combo in combos:
        group = dict(zip(by, combo, strict=True))
        keys = {**rule.filters, **group}
        view = windows.read(
            minutes=minutes,
            period=period,
            provider=keys.get("provider"),
            model=keys.get("model"),
            feature=keys.get("feature"),
            team=keys.get("team"),
        )
        for extra, value in _from_view(rule, view):
            readings[(*tuple(group.items()), *extra)] = value
    return readings


def _from_view(rule: Rule, view: WindowView) -> list[tuple[Labels, float | None]]:
    if rule.signal == "error_rate":
        if not view.calls:
            return [] if "error_type" in rule.group_by else [((), None)]
        if "error_type" in rule.group_by:
            return [
                ((("error_type", kind),), count / view.calls)
                for kind, count in sorted(view.errors_by_type.items())
                if rule.error_type is None or kind == rule.error_type
            ]
        errors = view.errors_by_type.get(rule.error_type, 0) if rule.error_type else view.errors
        return [((), errors / view.calls)]
    if rule.signal == "quality":
        return _quality(rule, view.quality)
    value: float | Decimal | None
    if rule.signal == "spend":
        value = view.cost_usd
    elif rule.signal == "cost_per_request":
        value = view.cost_per_call_usd
    elif rule.signal == "latency_p50":
        value = view.latency_p50_ms
    elif rule.signal == "latency_p95":
        value = view.latency_p95_ms
    elif rule.signal == "latency_p99":
        value = view.latency_p99_ms
    elif rule.signal == "tokens":
        value = view.input_tokens + view.output_tokens
    elif rule.signal == "cache_hit_ratio":
        value = view.cache_hit_ratio
    else:
        raise SignalError(f"rule {rule.name!r}: the live windows cannot answer {rule.signal}")
    return [((), None if value is None else float(value))]


def _quality(rule: Rule, means: dict[str, float]) -> list[tuple[Labels, float | None]]:
    if rule.score is not None:
        return [((), means.get(rule.score))]
    # The built-in evaluators' means are rates of a fault (a refusal rate of 0.02 is good):
    # a rule over every score is about scores where higher is better, so it leaves them out.
    return [
        ((("score", name),), mean)
        for name, mean in sorted(means.items())
        if name not in EVALUATOR_NAMES
    ]


def store_window(rule: Rule, now: datetime, tz: ZoneInfo) -> Window:
    """The rule's window ending at ``now``; ``today`` and ``month`` begin at local midnight."""
    seconds = rule.window_s
    if seconds is not None:
        return Window(start=now - timedelta(seconds=seconds), end=now)
    local = now.astimezone(tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if rule.window == "month":
        start = start.replace(day=1)
    return Window(start=start, end=now)


def read_store(rule: Rule, queries: Queries, now: datetime, tz: ZoneInfo) -> Readings:
    """The rule's value per group, from the store."""
    window = store_window(rule, now, tz)
    filters = Filters(**rule.filters)
    if rule.signal == "error_rate":
        return _store_error_rate(rule, queries, window, filters)
    quality = rule.signal in ("quality", "query")
    readings: Readings = {}
    for labels, measures in _measures(queries, window, filters, rule.group_by, quality=quality):
        for extra, value in _from_measures(rule, measures):
            readings[(*labels, *extra)] = value
    return readings


def _measures(
    queries: Queries, window: Window, filters: Filters, by: tuple[str, ...], *, quality: bool
) -> list[tuple[Labels, Measures]]:
    if not by:
        return [((), queries.summary(window, filters, quality=quality))]
    return [
        (tuple((f, row.group.get(f) or "") for f in by), row)
        for row in queries.breakdown(window, filters, by, quality=quality)
        # A group held only by stored rows skipped as out of range has no calls to judge.
        if row.calls
    ]


def _store_error_rate(rule: Rule, queries: Queries, window: Window, filters: Filters) -> Readings:
    base = tuple(f for f in rule.group_by if f != "error_type")
    totals = dict(_measures(queries, window, filters, base, quality=False))
    if "error_type" not in rule.group_by and rule.error_type is None:
        return {labels: (m.errors / m.calls if m.calls else None) for labels, m in totals.items()}
    errors = dataclasses.replace(filters, status="error", error_type=rule.error_type)
    by = (*base, "error_type") if "error_type" in rule.group_by else base
    readings: Readings = {}
    if "error_type" not in rule.group_by:
        readings = {labels: (0.0 if m.calls else None) for labels, m in totals.items()}
    for labels, m in _measures(queries, window, errors, by, quality=False):
        total = totals.get(labels[: len(base)])
        if total is not None and total.calls:
            readings[labels] = m.calls / total.calls
    return readings


def _from_measures(rule: Rule, m: Measures) -> list[tuple[Labels, float | None]]:
    if rule.signal == "quality":
        return _quality(rule, m.quality)
    value: float | int | Decimal | None
    if rule.signal == "spend":
        value = m.total_cost_usd
    elif rule.signal == "cost_per_request":
        value = m.avg_cost_usd
    elif rule.signal in ("latency_p50", "latency_p95", "latency_p99"):
        value = getattr(m, f"{rule.signal}_ms")
    elif rule.signal == "tokens":
        value = m.input_tokens + m.output_tokens
    elif rule.signal == "cache_hit_ratio":
        value = m.cache_hit_ratio
    else:
        value = getattr(m, rule.measure or "")
    return [((), None if value is None else float(value))]
