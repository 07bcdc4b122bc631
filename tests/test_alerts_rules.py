"""The rule file: the defaults load, and a mistake is refused with its line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aivitals.alerts import RuleFileError, default_rules_text, load_rules, parse_rules
from aivitals.alerts.rules import parse_duration

GOOD = """\
interval: 15s
rules:
  - name: Slow
    signal: latency_p95
    window: 10m
    op: ">"
    threshold: 5000
    group_by: [model, team]
    filters: {environment: prod}
    for: 2m
    labels: {team_owner: search}
"""


def refused(text: str) -> RuleFileError:
    with pytest.raises(RuleFileError) as caught:
        parse_rules(text, source="alerts.yaml")
    return caught.value


def test_a_good_rule_reads_as_written() -> None:
    rules = parse_rules(GOOD)
    rule = rules.rule("Slow")
    assert rules.interval_s == 15
    assert (rule.window_s, rule.for_s, rule.group_by) == (600, 120, ("model", "team"))
    assert rule.filters == {"environment": "prod"}
    assert rule.labels == {"team_owner": "search"}


def test_the_defaults_hold_the_design_thresholds() -> None:
    rules = {r.name: r for r in parse_rules(default_rules_text()).rules}
    table = {
        "DailyBudgetWarning": ("spend", ">", 50, "warning"),
        "DailyBudgetCritical": ("spend", ">", 100, "critical"),
        "CostPerRequestSpike": ("cost_per_request", ">", 0.10, "warning"),
        "LatencyP95High": ("latency_p95", ">", 5000, "warning"),
        "LatencyP99High": ("latency_p99", ">", 10000, "critical"),
        "QualityDegraded": ("quality", "<", 0.7, "warning"),
        "QualityCriticalDrop": ("quality", "<", 0.5, "critical"),
        "RefusalRateHigh": ("quality", ">", 0.05, "warning"),
        "PiiLeak": ("quality", ">", 0, "critical"),
        "HighTokenUsage": ("tokens", ">", 1_000_000, "warning"),
        "ErrorRateHigh": ("error_rate", ">", 0.05, "warning"),
        "CacheHitRatioLow": ("cache_hit_ratio", "<", 0.2, "warning"),
        # Issue 14's kinds: any significant drift, a forecast over 100% of the budget, z > 4.
        "DriftFromBaseline": (None, ">", 0.0, "warning"),
        "SpendForecastOverBudget": (None, ">", 1.0, "warning"),
        "ErrorRateAnomaly": (None, ">", 4.0, "warning"),
    }
    assert {n: (r.signal, r.op, r.threshold, r.severity) for n, r in rules.items()} == table
    kinds = {n: r.kind for n, r in rules.items() if r.kind != "threshold"}
    assert kinds == {
        "DriftFromBaseline": "drift",
        "SpendForecastOverBudget": "forecast",
        "ErrorRateAnomaly": "anomaly",
    }
    assert rules["DriftFromBaseline"].signals == ("latency_ms", "output_tokens", "refusal_rate")
    assert rules["DailyBudgetWarning"].window == "today"
    assert rules["HighTokenUsage"].window == "today"
    assert (rules["RefusalRateHigh"].score, rules["RefusalRateHigh"].window_s) == ("refusal", 3600)
    assert (rules["PiiLeak"].score, rules["PiiLeak"].window_s) == ("pii_leak", 3600)


@pytest.mark.parametrize(
    ("mistake", "line", "reason"),
    [
        ("    threshold: 5000", 7, "rule 'Slow': threshold: Input should be a valid number"),
        ('    op: ">"', 6, "rule 'Slow': op: Input should be '>', '>=', '<' or '<='"),
        ("    window: 10m", 5, "rule 'Slow': window: cannot read duration '10 minutes'"),
        ("    for: 2m", 10, "rule 'Slow': for: cannot read duration"),
        ("    group_by: [model, team]", 8, "rule 'Slow': group_by: unknown field 'region'"),
        ("    filters: {environment: prod}", 9, "rule 'Slow': filters: unknown field 'env'"),
    ],
)
def test_a_bad_value_is_refused_with_its_line(mistake: str, line: int, reason: str) -> None:
    replacement = {
        "    threshold: 5000": "    threshold: fast",
        '    op: ">"': "    op: above",
        "    window: 10m": "    window: 10 minutes",
        "    for: 2m": "    for: soon",
        "    group_by: [model, team]": "    group_by: [model, region]",
        "    filters: {environment: prod}": "    filters: {env: prod}",
    }[mistake]
    error = refused(GOOD.replace(mistake, replacement))
    assert error.line == line
    assert str(error).startswith(f"alerts.yaml:{line}: {reason}")


def test_an_unknown_key_is_refused_at_its_line() -> None:
    error = refused(GOOD.replace("    for: 2m\n", "    for: 2m\n    treshold: 3\n"))
    assert error.line == 11
    assert "treshold: Extra inputs are not permitted" in str(error)


def test_a_missing_key_points_at_its_rule() -> None:
    error = refused(GOOD.replace('    op: ">"\n', ""))
    assert error.line == 3
    assert "rule 'Slow': op: Field required" in str(error)


def test_inconsistent_fields_are_refused() -> None:
    assert "score goes with signal: quality" in str(
        refused(GOOD.replace("    for: 2m", "    score: helpfulness"))
    )
    assert "signal: query needs measure" in str(
        refused(GOOD.replace("signal: latency_p95", "signal: query"))
    )
    assert "cannot format the summary template" in str(
        refused(GOOD.replace("    for: 2m", "    summary: 'p95 is {value'"))
    )


def test_yaml_syntax_errors_name_their_line() -> None:
    error = refused(GOOD.replace("    group_by: [model, team]", "    group_by: [model, team"))
    assert error.line is not None and error.line >= 7
    assert "not valid YAML" in str(error)


def test_duplicate_rules_and_unknown_notifiers_are_refused() -> None:
    twice = GOOD + GOOD.split("rules:\n", 1)[1]
    error = refused(twice)
    assert (error.line, error.reason) == (12, "rule 'Slow' is defined twice")
    error = refused(GOOD + "    notify: [pager]\n")
    assert (error.line, error.reason) == (12, "rule 'Slow': notify: no notifier 'pager'")
    error = refused("notifiers:\n  - {name: pd, type: pagerduty}\n")
    assert error.line == 2
    assert "needs routing_key" in error.reason


def test_a_missing_file_is_a_rule_file_error(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError, match="cannot read it"):
        load_rules(tmp_path / "nope.yaml")


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from("smhdw"))
def test_durations_read_in_prometheus_units(amount: int, unit: str) -> None:
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[unit]
    assert parse_duration(f"{amount}{unit}") == amount * seconds


@given(st.text(max_size=8).filter(lambda t: not t.strip().rstrip("smhdw").isdigit()))
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read duration"):
        parse_duration(text)
