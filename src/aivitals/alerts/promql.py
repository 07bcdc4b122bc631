"""The same rules as a Prometheus rule file, over the metrics of `aivitals.metric_schema`.

A rule that PromQL cannot express over those metrics (``signal: query``, a ``month`` window, a
filter or group on a label the metric lacks, such as ``team`` on latency) is listed with the
reason, never dropped silently. ``window: today`` becomes a rolling 24 hours (Prometheus has no
calendar day), and says so in the notes.

Each expression answers in the rule's own unit (latency in milliseconds), so thresholds and the
``{value}`` of summaries mean the same in both places.

>>> from aivitals.alerts.rules import parse_rules
>>> rules = parse_rules("rules: [{name: Slow, signal: latency_p95, op: '>', threshold: 5000}]")
>>> print(export_prometheus(rules).rules[0]["expr"])
histogram_quantile(0.95, sum by (le) (rate(aivitals_request_duration_seconds_bucket[5m]))) * 1000 > 5000.0
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from aivitals.alerts.rules import Rule, RuleSet, parse_duration
from aivitals.metric_schema import (
    CACHE_REQUESTS,
    COST,
    DURATION,
    EVALUATOR_NAMES,
    QUALITY,
    REQUESTS,
    TOKENS,
    UNPRICED,
    MetricSpec,
)

GROUP_NAME = "aivitals"

_REQUESTS = REQUESTS.name
_DURATION = f"{DURATION.name}_bucket"
_TOKENS = TOKENS.name
_COST = COST.name
_UNPRICED = UNPRICED.name
_CACHE = CACHE_REQUESTS.name
_QUALITY = QUALITY.name


def _shared(*metrics: MetricSpec, fixed: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The labels every one of ``metrics`` has, but those the expression sets itself."""
    first, *others = metrics
    return tuple(
        label
        for label in first.labels
        if label not in fixed and all(label in other.labels for other in others)
    )


_LATENCY = _shared(DURATION)
# What a rule may filter or group by: the labels that every metric of its signal shares.
_LABELS: dict[str, tuple[str, ...]] = {
    "spend": _shared(COST),
    "cost_per_request": _shared(COST, REQUESTS, UNPRICED),
    "latency_p50": _LATENCY,
    "latency_p95": _LATENCY,
    "latency_p99": _LATENCY,
    # Input and output: type is a partition, so the sum over it is every token once.
    "tokens": _shared(TOKENS, fixed=("type",)),
    # error_type is grouped by apart (`_value_expr`), status is what the rule counts.
    "error_rate": _shared(REQUESTS, fixed=("status", "error_type")),
    "cache_hit_ratio": _shared(CACHE_REQUESTS, fixed=("result", "level")),
    "quality": _shared(QUALITY, fixed=("name",)),
}
KIND_FIGURES = frozenset(
    {
        *("current", "baseline", "spread", "basis", "references", "series"),
        *("drift", "change", "direction", "statistic"),
        *("projected", "low", "high", "spent", "budget", "coverage", "long", "short"),
    }
)
"""The figures `aivitals.alerts.kinds` gives a kind's summary; exported, each reads ``?``."""
_PRINTF = re.compile(r"\.?\d*[fge]")


class Unexpressible(Exception):
    """PromQL over aivitals' metrics cannot say what this rule says."""


@dataclass(slots=True)
class Export:
    """The exported rules, the rules left out (with why) and notes on approximations.

    ``records`` are the recording rules that ``anomaly`` rules read (one series per rule).
    """

    rules: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def text(self) -> str:
        """The rule file, as YAML."""
        document = {"groups": [{"name": GROUP_NAME, "rules": [*self.records, *self.rules]}]}
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=10_000)


def export_prometheus(rules: RuleSet) -> Export:
    """Every enabled rule PromQL can express, as Prometheus alerting rules."""
    result = Export()
    for rule in rules.rules:
        if not rule.enabled:
            continue
        try:
            expr = promql_of(rule) if rule.kind == "threshold" else _kind_promql(rule, result)
        except Unexpressible as exc:
            result.skipped.append((rule.name, str(exc)))
            continue
        if rule.window == "today" and rule.kind == "threshold":
            result.notes.append(
                (rule.name, "window today is exported as the last 24 hours (rolling)")
            )
        entry: dict[str, Any] = {"alert": rule.name, "expr": expr}
        if rule.for_s > 0:
            entry["for"] = rule.for_
        entry["labels"] = {**rule.labels, "severity": rule.severity}
        entry["annotations"] = {"summary": go_template(rule)}
        result.rules.append(entry)
    return result


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _selector(metric: str, matchers: Sequence[str]) -> str:
    return f"{metric}{{{','.join(matchers)}}}" if matchers else metric


def _sum(by: Sequence[str], inner: str) -> str:
    return f"sum by ({', '.join(by)}) ({inner})" if by else f"sum({inner})"


def _kind_promql(rule: Rule, export: Export) -> str:
    """A ``burn_rate`` or ``anomaly`` rule's expression (recording rules go into ``export``)."""
    if rule.kind == "drift":
        raise Unexpressible(
            "kind drift compares distributions (PSI, tests) against a baseline; PromQL cannot"
        )
    if rule.kind == "forecast":
        raise Unexpressible(
            "kind forecast projects spend from its hour-of-week rhythm; PromQL has no such model"
        )
    if rule.budget == "gateway":
        raise Unexpressible("budget: gateway reads the gateway's config, which Prometheus lacks")
    if rule.kind == "burn_rate":
        return _burn_promql(rule, export)
    return _anomaly_promql(rule, export)


def _check_labels(rule: Rule, signal: str) -> None:
    allowed = _LABELS[signal]
    for name in (*rule.filters, *rule.group_by):
        if name not in allowed:
            raise Unexpressible(
                f"{name}: the {signal} metrics have no {name} label (they have {', '.join(allowed)})"
            )


def _burn_promql(rule: Rule, export: Export) -> str:
    _check_labels(rule, "spend")
    matchers = [f"{name}={_quote(value)}" for name, value in rule.filters.items()]
    if rule.window == "month":
        period = "(scalar(days_in_month()) * 86400)"
        export.notes.append(
            (rule.name, "the month is the current UTC calendar month (Prometheus has no zone)")
        )
    else:
        period = "86400"
    parts = []
    for text in sorted(rule.windows, key=parse_duration, reverse=True):
        seconds = parse_duration(text)
        spent = _sum(rule.group_by, _increase(_COST, matchers, text))
        parts.append(
            f"{spent} / ({rule.budget_usd!r} * {seconds:g} / {period}) {rule.op} {rule.threshold!r}"
        )
    # `and` keeps the long window's value: both must breach, and {value} is the long burn.
    return " and ".join(f"({part})" for part in parts)


def _anomaly_promql(rule: Rule, export: Export) -> str:
    series = rule.series or "requests"
    signal = "error_rate" if series == "requests" else series
    _check_labels(rule, signal)
    matchers = [f"{name}={_quote(value)}" for name, value in rule.filters.items()]
    rng = rule.window
    if series == "requests":
        value = _sum(rule.group_by, _increase(_REQUESTS, matchers, rng))
    else:
        like = rule.model_copy(update={"kind": "threshold", "signal": signal})
        value = _value_expr(like, list(rule.group_by), matchers, rng)
    record = f"aivitals:{rule.name}:{series}"
    export.records.append({"record": record, "expr": value})
    days = rule.days
    shifted = [f"{record} offset {k}d" for k in range(1, days + 1)]
    mean = f"(({' + '.join(shifted)}) / {days})"
    square = f"(({' + '.join(f'({s}) ^ 2' for s in shifted)}) / {days})"
    export.notes.append(
        (
            rule.name,
            f"a z-score of mean and standard deviation over the same hour of the past {days} "
            "days (the engine's daily basis; the engine uses the median and MAD)",
        )
    )
    return f"({record} - {mean}) / sqrt({square} - {mean} ^ 2) {rule.op} {rule.threshold!r}"


def promql_of(rule: Rule) -> str:
    """The rule's alerting expression; raises `Unexpressible` with the reason."""
    if rule.signal is None:
        raise Unexpressible(f"kind {rule.kind}: see export_prometheus")
    if rule.signal == "query":
        raise Unexpressible("signal: query reads the store, which Prometheus does not have")
    if rule.window == "month":
        raise Unexpressible("window month: Prometheus has no calendar month")
    rng = "1d" if rule.window == "today" else rule.window
    allowed = _LABELS[rule.signal]
    groups = [g for g in rule.group_by if not (rule.signal == "error_rate" and g == "error_type")]
    for name in rule.filters:
        if name not in allowed:
            raise Unexpressible(
                f"filter on {name}: the {rule.signal} metrics have no {name} label "
                f"(they have {', '.join(allowed)})"
            )
    for name in groups:
        if name not in allowed:
            raise Unexpressible(
                f"group_by {name}: the {rule.signal} metrics have no {name} label "
                f"(they have {', '.join(allowed)})"
            )
    matchers = [f"{name}={_quote(value)}" for name, value in rule.filters.items()]
    value = _value_expr(rule, groups, matchers, rng)
    return f"{value} {rule.op} {rule.threshold!r}"


def _increase(metric: str, matchers: Sequence[str], rng: str) -> str:
    return f"increase({_selector(metric, matchers)}[{rng}])"


def _value_expr(rule: Rule, by: list[str], matchers: list[str], rng: str) -> str:
    signal = rule.signal or ""
    if signal == "spend":
        return _sum(by, _increase(_COST, matchers, rng))
    if signal == "cost_per_request":
        calls = _sum(by, _increase(_REQUESTS, matchers, rng))
        unpriced = _sum(by, _increase(_UNPRICED, matchers, rng))
        # No unpriced series at all is zero unpriced calls, not an empty answer.
        priced = f"({calls} - ({unpriced} or {calls} * 0))"
        return f"{_sum(by, _increase(_COST, matchers, rng))} / {priced}"
    if signal.startswith("latency_p"):
        q = int(signal.removeprefix("latency_p")) / 100
        buckets = _sum([*by, "le"], f"rate({_selector(_DURATION, matchers)}[{rng}])")
        return f"histogram_quantile({q:g}, {buckets}) * 1000"
    if signal == "tokens":
        # Every type, named: a replica from before input and output became a partition still
        # reports cached_input, cache_write and reasoning, which would count twice.
        return _sum(by, _increase(_TOKENS, ['type=~"input|output"', *matchers], rng))
    if signal == "error_rate":
        errors = ['status="error"', *matchers]
        if rule.error_type is not None:
            errors.append(f"error_type={_quote(rule.error_type)}")
        total = _sum(by, _increase(_REQUESTS, matchers, rng))
        if "error_type" in rule.group_by:
            failed = _sum([*by, "error_type"], _increase(_REQUESTS, errors, rng))
            return f"{failed} / ignoring(error_type) group_left {total}"
        return f"{_sum(by, _increase(_REQUESTS, errors, rng))} / {total}"
    if signal == "cache_hit_ratio":
        looked = _sum(by, _increase(_CACHE, ['result=~"hit|miss"', *matchers], rng))
        hits = _sum(by, _increase(_CACHE, ['result="hit"', *matchers], rng))
        return f"({hits} or {looked} * 0) / {looked}"
    if signal == "quality":
        if rule.score is not None:
            named = [*matchers, f"name={_quote(rule.score)}"]
            total = _sum(by, _increase(f"{_QUALITY}_sum", named, rng))
            count = _sum(by, _increase(f"{_QUALITY}_count", named, rng))
            return f"{total} / {count}"
        # One alert per score name, labelled `score` as the engine labels it; the evaluators'
        # rates are left out, as the engine leaves them out (`signals._quality`).
        rates = [*matchers, f"name!~{_quote('|'.join(EVALUATOR_NAMES))}"]
        parts = []
        for suffix in ("sum", "count"):
            inner = _increase(f"{_QUALITY}_{suffix}", rates, rng)
            relabelled = f'label_replace({inner}, "score", "$1", "name", "(.*)")'
            parts.append(_sum([*by, "score"], relabelled))
        return f"{parts[0]} / {parts[1]}"
    raise Unexpressible(f"signal {signal} has no PromQL form")


def go_template(rule: Rule) -> str:
    """The rule's summary as a Prometheus annotation template.

    ``{value}`` becomes ``$value`` (printf for ``.2f``-like specs, humanizePercentage for
    ``.1%``), ``{threshold}`` and the rule's own fields are filled in now, and any other field
    is a label: ``{model}`` becomes ``{{ $labels.model }}``.
    """
    fixed = {
        "threshold": rule.threshold,
        "alertname": rule.name,
        "severity": rule.severity,
        "op": rule.op,
        "window": rule.window,
    }
    out: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(rule.summary):
        out.append(literal)
        if name is None:
            continue
        if name == "value":
            if spec and spec.endswith("%"):
                out.append("{{ $value | humanizePercentage }}")
            elif spec and _PRINTF.fullmatch(spec):
                out.append(f'{{{{ printf "%{spec}" $value }}}}')
            else:
                out.append("{{ $value }}")
        elif name in fixed:
            text = format(fixed[name], spec or "")
            out.append(text if conversion is None else repr(text))
        elif rule.kind != "threshold" and name in KIND_FIGURES:
            out.append("?")  # the engine's own figures (baseline, ...): Prometheus has none
        else:
            out.append(f"{{{{ $labels.{name} }}}}")
    return "".join(out)
