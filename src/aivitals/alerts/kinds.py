"""The rule kinds that compare with the past or with a budget, read from the store.

Each answers like `signals.read_store`: ``{group labels: value}``, None where there is not
enough data (which never breaches), plus per group the figures a summary may name:

- ``anomaly``: the robust z of ``series`` in the window against the same hour of past weeks
  (`aivitals.query.anomaly`); figures ``current``, ``baseline``, ``spread``, ``basis``.
- ``drift``: per group and signal (label ``signal``), the drift statistic (PSI, or Cohen's h
  as a size) when the verdict is at least the rule's ``verdict``, else 0 (`aivitals.query.drift`);
  figures ``baseline``, ``current``, ``change``, ``drift`` (its one-line summary).
- ``forecast``: the period's projected spend (or its interval's ``high`` bound) as a share of
  the budget (`aivitals.query.forecast`); figures ``projected``, ``low``, ``high``, ``spent``,
  ``budget``.
- ``burn_rate``: the smaller of the two windows' burn rates, so it breaches only when both do
  (`aivitals.query.burn`); figures ``long``, ``short``, ``budget``.

Budgets come from the rule (``budget_usd``) or from the gateway's config (``budget: gateway``):
each gateway budget of the rule's period is read apart, labelled by its scope and value; one
for every value of a scope (``each``) is read per value, grouped by that scope.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aivitals.alerts.rules import Rule, parse_duration
from aivitals.alerts.signals import Labels, Readings, store_window
from aivitals.gateway.budgets import Budget
from aivitals.query import Filters, Queries
from aivitals.query.anomaly import Settings as AnomalySettings
from aivitals.query.anomaly import anomalies
from aivitals.query.burn import burn_rates
from aivitals.query.forecast import Period, forecast_spend

Details = dict[Labels, dict[str, Any]]
PERIOD = {"today": "day", "month": "month"}


def read_kind(
    rule: Rule, queries: Queries, now: datetime, tz: ZoneInfo, budgets: Sequence[Budget] = ()
) -> tuple[Readings, Details]:
    """The rule's value per group now, and the figures its summary may name."""
    filters = Filters(**rule.filters)
    if rule.kind == "anomaly":
        return _anomaly(rule, queries, now, filters)
    if rule.kind == "drift":
        return _drift(rule, queries, now, tz, filters)
    readings: Readings = {}
    details: Details = {}
    for labels, budget_usd, scoped in _budgets(rule, budgets):
        merged = dataclasses.replace(filters, **scoped)
        if rule.kind == "forecast":
            _forecast(
                rule,
                queries,
                now=now,
                tz=tz,
                filters=merged,
                labels=labels,
                budget_usd=budget_usd,
                readings=readings,
                details=details,
            )
        else:
            _burn(
                rule,
                queries,
                now=now,
                tz=tz,
                filters=merged,
                labels=labels,
                budget_usd=budget_usd,
                readings=readings,
                details=details,
            )
    return readings, details


def _anomaly(
    rule: Rule, queries: Queries, now: datetime, filters: Filters
) -> tuple[Readings, Details]:
    settings = AnomalySettings(
        window=timedelta(seconds=rule.window_s or 3600),
        weeks=rule.weeks,
        days=rule.days,
        min_history=rule.min_history,
    )
    readings: Readings = {}
    details: Details = {}
    series = rule.series or "requests"  # the rule's validator makes it present
    for found in anomalies(
        queries, now, [series], filters=filters, by=rule.group_by, settings=settings
    ):
        labels = tuple((k, v or "") for k, v in found.group.items())
        readings[labels] = found.z
        details[labels] = {
            "current": found.value,
            "baseline": found.baseline,
            "spread": found.spread,
            "basis": found.basis,
            "references": found.references,
            "series": series,
        }
    return readings, details


def _drift(
    rule: Rule, queries: Queries, now: datetime, tz: ZoneInfo, filters: Filters
) -> tuple[Readings, Details]:
    from aivitals.query.drift import MIN_SAMPLES, drift_signals  # noqa: PLC0415  # scipy

    window = store_window(rule, now, tz)
    results = drift_signals(
        queries,
        window,
        baseline=rule.baseline,
        by=rule.group_by,
        signals=rule.signals or None,
        filters=filters,
        min_samples=rule.min_samples or MIN_SAMPLES,
    )
    wanted = ("significant",) if rule.verdict == "significant" else ("moderate", "significant")
    readings: Readings = {}
    details: Details = {}
    for result in results:
        labels = (*((k, v or "") for k, v in result.group.items()), ("signal", result.signal))
        if result.verdict == "not enough data" or result.value is None:
            readings[labels] = None
        else:
            readings[labels] = abs(result.value) if result.verdict in wanted else 0.0
        details[labels] = {
            "baseline": result.baseline,
            "current": result.current,
            "change": result.change,
            "direction": result.direction,
            "drift": result.summary,
            "statistic": result.statistic,
        }
    return readings, details


def _budgets(rule: Rule, budgets: Sequence[Budget]) -> list[tuple[Labels, float, dict[str, Any]]]:
    """(labels, budget USD, extra filters) for each budget the rule reads."""
    if rule.budget == "rule":
        return [((), float(rule.budget_usd or 0), {})]
    period = PERIOD[rule.window]
    found: list[tuple[Labels, float, dict[str, Any]]] = []
    for budget in budgets:
        if budget.period != period:
            continue
        if budget.value is not None:
            found.append(
                (((budget.scope, budget.value),), float(budget.usd), {budget.scope: budget.value})
            )
        else:
            found.append((((budget.scope, "*"),), float(budget.usd), {}))
    # A budget for every value first, so that one naming a value overrides it for that value.
    return sorted(found, key=lambda entry: entry[0][0][1] != "*")


def _forecast(
    rule: Rule,
    queries: Queries,
    *,
    now: datetime,
    tz: ZoneInfo,
    filters: Filters,
    labels: Labels,
    budget_usd: float,
    readings: Readings,
    details: Details,
) -> None:
    period: Period = "day" if rule.window == "today" else "month"
    if labels and labels[0][1] == "*":
        scope = labels[0][0]
        values = [
            row.group.get(scope)
            for row in queries.breakdown(
                store_window(rule, now, tz), filters, (scope,), quality=False
            )
            if row.calls
        ]
        for value in values:
            if value is None:
                continue
            scoped = dataclasses.replace(filters, **{scope: value})
            _forecast(
                rule,
                queries,
                now=now,
                tz=tz,
                filters=scoped,
                labels=((scope, value),),
                budget_usd=budget_usd,
                readings=readings,
                details=details,
            )
        return
    found = forecast_spend(queries, now, period, filters=filters, tz=str(tz))
    figure = found.high_usd if rule.bound == "high" else found.projected_usd
    readings[labels] = None if figure is None else figure / budget_usd
    details[labels] = {
        "projected": found.projected_usd,
        "low": found.low_usd,
        "high": found.high_usd,
        "spent": found.spent_usd,
        "budget": budget_usd,
        "coverage": found.coverage,
    }


def _burn(
    rule: Rule,
    queries: Queries,
    *,
    now: datetime,
    tz: ZoneInfo,
    filters: Filters,
    labels: Labels,
    budget_usd: float,
    readings: Readings,
    details: Details,
) -> None:
    period: Period = "day" if rule.window == "today" else "month"
    each = bool(labels) and labels[0][1] == "*"
    by = (labels[0][0],) if each else rule.group_by
    spans = [timedelta(seconds=parse_duration(w)) for w in rule.windows]
    found = burn_rates(
        queries,
        now,
        budget_usd=budget_usd,
        period=period,
        windows=spans,
        filters=filters,
        by=by,
        tz=str(tz),
    )
    for group, burns in found.items():
        named = tuple((k, v or "") for k, v in group)
        key = named if each else (*labels, *named)
        ordered = sorted(burns, key=lambda b: b.window_s)
        readings[key] = min(b.rate for b in burns)
        details[key] = {"short": ordered[0].rate, "long": ordered[-1].rate, "budget": budget_usd}
