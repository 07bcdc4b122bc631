"""Alert rules: the YAML file, checked with pydantic, refused with its line and reason.

>>> rules = parse_rules("rules:\\n  - {name: Slow, signal: latency_p95, op: '>', threshold: 5000}")
>>> rules.rules[0].name, rules.rules[0].window
('Slow', '5m')
>>> parse_rules("rules:\\n  - name: Slow\\n    signal: latency_p95\\n    op: '>'\\n    threshold: fast")
Traceback (most recent call last):
...
aivitals.alerts.rules.RuleFileError: <rules>:5: rule 'Slow': threshold: Input should be a valid number, unable to parse string as a number
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aivitals.config import ConfigError, check_timezone
from aivitals.model import ERROR_TYPES
from aivitals.query.filters import FIELDS
from aivitals.query.measures import Measures

Signal = Literal[
    "spend",
    "cost_per_request",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "tokens",
    "error_rate",
    "cache_hit_ratio",
    "quality",
    "query",
]
Op = Literal[">", ">=", "<", "<="]
Kind = Literal["threshold", "drift", "anomaly", "forecast", "burn_rate"]
Series = Literal["requests", "error_rate", "spend", "latency_p95"]
# What a rule of each kind compares, and its default bound: a robust z of 4, a burn 2x the
# budget's pace in both windows, a forecast at 100% of the budget, any drift at the verdict.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "anomaly": {"op": ">", "threshold": 4.0, "window": "1h"},
    "drift": {"op": ">", "threshold": 0.0, "window": "1h"},
    "forecast": {"op": ">", "threshold": 1.0, "window": "month"},
    "burn_rate": {"op": ">", "threshold": 2.0, "window": "month"},
}
Severity = Literal["info", "warning", "critical"]
NotifierType = Literal["webhook", "slack", "pagerduty", "alertmanager"]

_KIND_FIELDS = {
    "series": "anomaly",
    "weeks": "anomaly",
    "days": "anomaly",
    "min_history": "anomaly",
    "signals": "drift",
    "baseline": "drift",
    "verdict": "drift",
    "min_samples": "drift",
    "budget_usd": "forecast or burn_rate",
    "budget": "forecast or burn_rate",
    "bound": "forecast",
    "windows": "burn_rate",
}
_DURATION = re.compile(r"(\d+)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The numeric fields of Measures that `signal: query` can read.
QUERY_MEASURES = tuple(
    name for name in Measures.__dataclass_fields__ if name not in {"quality", "percentiles"}
)
DEFAULT_RULES_PATH = "aivitals-alerts.yaml"


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``5m``, ``1h``, ``1d``, ``2w`` (Prometheus' own units)."""
    match = _DURATION.fullmatch(text.strip())
    # Past 15 digits no duration is meant (and Python reads no integer past 4,300 digits).
    if match is None or len(match.group(1).lstrip("0")) > 15:
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
        raise ValueError(f"cannot read duration {shown}; use 30s, 5m, 1h, 1d or 2w")
    return float(int(match.group(1)) * _SECONDS[match.group(2)])


class _Probe(dict[str, Any]):
    def __missing__(self, key: str) -> float:
        return 0.0


def render(template: str, values: dict[str, Any]) -> str:
    """``template`` formatted with ``values``; a field that is absent reads as empty."""

    class _Blank(dict[str, Any]):
        def __missing__(self, key: str) -> str:
            return ""

    try:
        return string.Formatter().vformat(template, (), _Blank(values))
    except (ValueError, TypeError, KeyError, IndexError):
        # A format spec that does not fit the value (``{model:.2f}``): say it as written.
        return template


class Rule(BaseModel):
    """One alert rule: a signal over a window compared with a threshold, per group.

    ``kind`` other than ``threshold`` compares behaviour with its own past or with a budget
    (docs/alerts.md, "Rules that compare with the past"): ``anomaly`` reads a robust z of a
    ``series`` against the same hour of past weeks, ``drift`` the drift statistic of ``signals``
    against a ``baseline``, ``forecast`` the period's projected spend as a share of ``budget_usd``
    and ``burn_rate`` the slower of two windows' burn rates of it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    kind: Kind = "threshold"
    signal: Signal | None = None
    op: Op
    threshold: float
    window: str = "5m"
    series: Series | None = None
    signals: tuple[str, ...] = ()
    baseline: str = "7d"
    verdict: Literal["moderate", "significant"] = "significant"
    min_samples: int | None = Field(default=None, ge=2)
    weeks: int = Field(default=4, ge=1, le=52)
    days: int = Field(default=7, ge=1, le=60)
    min_history: int = Field(default=5, ge=2)
    budget_usd: float | None = Field(default=None, gt=0)
    budget: Literal["rule", "gateway"] = "rule"
    windows: tuple[str, ...] = ("1h", "6h")
    bound: Literal["projected", "high"] = "projected"
    severity: Severity = "warning"
    for_: str = Field(default="0s", alias="for")
    filters: dict[str, str] = Field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    error_type: str | None = None
    score: str | None = None
    measure: str | None = None
    source: Literal["auto", "live", "store"] = "auto"
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str = "{alertname}: {value} {op} {threshold}"
    notify: tuple[str, ...] | None = None
    repeat_interval: str | None = None
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") in KIND_DEFAULTS:
            return {**KIND_DEFAULTS[data["kind"]], **data}
        return data

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) != 2:
            raise ValueError("give two windows, a long and a short one (like [1h, 6h])")
        for text in value:
            parse_duration(text)
        return value

    @field_validator("baseline")
    @classmethod
    def _baseline(cls, value: str) -> str:
        if value.startswith("pinned:") and len(value) > len("pinned:"):
            return value
        if not re.fullmatch(r"\d+d", value):
            raise ValueError("use a trailing number of days (7d) or pinned:NAME")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("use letters, digits and _ (not starting with a digit)")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if value not in ("today", "month"):
            parse_duration(value)
        return value

    @field_validator("for_", "repeat_interval")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("filters")
    @classmethod
    def _filters(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name not in FIELDS:
                raise ValueError(f"unknown field {name!r}; use one of {', '.join(FIELDS)}")
        if value.get("error_type") and value["error_type"] not in ERROR_TYPES:
            raise ValueError(f"error_type has no value {value['error_type']!r}")
        return value

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in FIELDS:
                raise ValueError(f"unknown field {name!r}; use one of {', '.join(FIELDS)}")
        if "user" in value:
            raise ValueError("user is not a group: one alert per user is a storm, filter instead")
        return tuple(dict.fromkeys(value))

    @field_validator("error_type")
    @classmethod
    def _error_type(cls, value: str | None) -> str | None:
        if value is not None and value not in ERROR_TYPES:
            raise ValueError(
                f"no error type {value!r}; use one of {', '.join(sorted(ERROR_TYPES))}"
            )
        return value

    @field_validator("summary")
    @classmethod
    def _summary(cls, value: str) -> str:
        try:
            string.Formatter().vformat(value, (), _Probe())
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"cannot format the summary template: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.kind != "threshold":
            return self._kind_consistent()
        if self.signal is None:
            raise ValueError("a threshold rule needs signal: (or a kind: drift, anomaly, ...)")
        for name, kinds in _KIND_FIELDS.items():
            if name in self.model_fields_set:
                raise ValueError(f"{name} goes with kind: {kinds}, not a threshold rule")
        if self.error_type is not None and self.signal != "error_rate":
            raise ValueError("error_type goes with signal: error_rate")
        if self.score is not None and self.signal != "quality":
            raise ValueError("score goes with signal: quality")
        if self.signal == "query":
            if self.measure not in QUERY_MEASURES:
                raise ValueError(f"signal: query needs measure: one of {', '.join(QUERY_MEASURES)}")
        elif self.measure is not None:
            raise ValueError("measure goes with signal: query")
        if self.signal == "quality" and self.score is None and "score" in self.labels:
            raise ValueError("labels: score is set per score name; remove it")
        return self

    def _kind_consistent(self) -> Rule:
        kind = self.kind
        if self.signal is not None:
            raise ValueError(f"signal goes with threshold rules; kind: {kind} does not take it")
        for name in ("error_type", "score", "measure"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name} goes with threshold rules, not kind: {kind}")
        if self.source == "live":
            raise ValueError(f"kind: {kind} reads the store's history; source: live cannot")
        if kind == "anomaly":
            if self.series is None:
                raise ValueError(
                    "kind: anomaly needs series: one of requests, error_rate, spend, latency_p95"
                )
            if self.window_s is None:
                raise ValueError("kind: anomaly needs a window of a duration (like 1h)")
        elif self.series is not None:
            raise ValueError("series goes with kind: anomaly")
        if kind == "drift":
            from aivitals.query.drift import SIGNALS  # noqa: PLC0415  # scipy, only when used

            for name in self.signals:
                if name not in SIGNALS and not name.startswith("error_rate."):
                    raise ValueError(f"signals: no signal {name!r}; use {', '.join(SIGNALS)}")
            if self.window_s is None:
                raise ValueError("kind: drift needs a window of a duration (like 1h)")
        elif self.signals:
            raise ValueError("signals goes with kind: drift")
        if kind in ("forecast", "burn_rate"):
            if self.window not in ("today", "month"):
                raise ValueError(f"kind: {kind} takes window: today or month (the budget's period)")
            if self.budget == "rule" and self.budget_usd is None:
                raise ValueError(
                    f"kind: {kind} needs budget_usd: (or budget: gateway for the gateway's budgets)"
                )
            if self.budget == "gateway" and self.budget_usd is not None:
                raise ValueError("budget: gateway reads the gateway's budgets; drop budget_usd")
        elif self.budget_usd is not None or self.budget != "rule":
            raise ValueError("budget_usd and budget go with kind: forecast or burn_rate")
        return self

    @property
    def for_s(self) -> float:
        return parse_duration(self.for_)

    @property
    def window_s(self) -> float | None:
        """The window's length, or None for the calendar windows ``today`` and ``month``."""
        return None if self.window in ("today", "month") else parse_duration(self.window)

    def breached(self, value: float | None) -> bool:
        """Whether ``value`` crosses the threshold; no value (no calls) never does."""
        if value is None or math.isnan(value):  # NaN: nothing to compare
            return False
        if self.op == ">":
            return value > self.threshold
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<":
            return value < self.threshold
        return value <= self.threshold


class NotifierConfig(BaseModel):
    """Where notifications go: ``type`` is webhook, slack, pagerduty or alertmanager."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: NotifierType
    url: str | None = None
    routing_key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> NotifierConfig:
        if self.type == "pagerduty":
            if not self.routing_key:
                raise ValueError("a pagerduty notifier needs routing_key")
        elif not self.url:
            raise ValueError(f"a {self.type} notifier needs url")
        return self


class RuleSet(BaseModel):
    """A whole rule file: settings, notifiers and rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: str = "30s"
    repeat_interval: str = "4h"
    timezone: str = "UTC"
    notifiers: tuple[NotifierConfig, ...] = ()
    rules: tuple[Rule, ...] = ()

    @field_validator("interval", "repeat_interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be above 0s")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            check_timezone(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def interval_s(self) -> float:
        return parse_duration(self.interval)

    def rule(self, name: str) -> Rule:
        """The rule called ``name``; KeyError if there is none."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


class RuleFileError(ValueError):
    """A rule file that cannot be used: ``source:line: reason``."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")


def default_rules_text() -> str:
    """The default rule file, as ``aivitals alerts init`` writes it."""
    return resources.files("aivitals.alerts").joinpath("defaults.yaml").read_text("utf-8")


def load_rules(path: str | Path) -> RuleSet:
    """Read and check the rule file at ``path``; raises `RuleFileError`."""
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise RuleFileError(str(path), None, f"cannot read it: {exc.strerror or exc}") from None
    return parse_rules(text, source=str(path))


def parse_rules(text: str, *, source: str = "<rules>") -> RuleSet:
    """Check a rule file's text; raises `RuleFileError` naming the line and the reason."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise RuleFileError(source, line, f"not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise RuleFileError(source, None, f"not valid YAML: {exc}") from None
    try:
        rules = RuleSet.model_validate({} if data is None else data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        node = _node_at(root, loc)
        line = node.start_mark.line + 1 if node is not None else None
        more = exc.error_count() - 1
        reason = f"{_where(data, loc)}{first['msg']}".replace("Value error, ", "")
        if more:
            reason += f" (and {more} more {'problem' if more == 1 else 'problems'})"
        raise RuleFileError(source, line, reason) from None
    _check_names(rules, root, source)
    return rules


def _check_names(rules: RuleSet, root: yaml.Node | None, source: str) -> None:
    def line_of(loc: tuple[str | int, ...]) -> int | None:
        node = _node_at(root, loc)
        return node.start_mark.line + 1 if node is not None else None

    seen: set[str] = set()
    for i, notifier in enumerate(rules.notifiers):
        if notifier.name in seen:
            raise RuleFileError(
                source, line_of(("notifiers", i, "name")), f"notifier {notifier.name!r} twice"
            )
        seen.add(notifier.name)
    names: set[str] = set()
    for i, rule in enumerate(rules.rules):
        if rule.name in names:
            raise RuleFileError(
                source, line_of(("rules", i, "name")), f"rule {rule.name!r} is defined twice"
            )
        names.add(rule.name)
        for target in rule.notify or ():
            if target not in seen:
                raise RuleFileError(
                    source,
                    line_of(("rules", i, "notify")),
                    f"rule {rule.name!r}: notify: no notifier {target!r}",
                )


def _where(data: Any, loc: Sequence[str | int]) -> str:
    """``rule 'Name': field: `` for an error inside a rule, else the dotted path."""
    if len(loc) >= 2 and loc[0] in ("rules", "notifiers") and isinstance(loc[1], int):
        kind = "rule" if loc[0] == "rules" else "notifier"
        try:
            name = data[loc[0]][loc[1]].get("name")
        except (AttributeError, IndexError, KeyError, TypeError):
            name = None
        head = f"{kind} {name!r}: " if name else f"{loc[0]}[{loc[1]}]: "
        rest = ".".join(str(part) for part in loc[2:])
        return head + (f"{rest}: " if rest else "")
    return ".".join(str(part) for part in loc) + ": " if loc else ""


def _node_at(root: yaml.Node | None, loc: Sequence[str | int]) -> yaml.Node | None:
    """The deepest YAML node on ``loc`` (a pydantic error location)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            found = next((value for key, value in node.value if key.value == part), None)
            if found is None:
                return node
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node
