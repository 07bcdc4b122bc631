"""The Prometheus export: `promtool check rules` accepts it, and `promtool test rules` shows each
exported default rule firing on series that breach it and staying quiet on series that do not.

Input series are counters that start at 0 at time 0 and grow linearly, evaluated at whole
minutes: `increase` and `rate` over them are then exact (no extrapolation), so every expected
value below is worked out by hand from the series, with the summary text as docs/alerts.md
describes it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aivitals.alerts import default_rules_text, export_prometheus, parse_rules
from tests.support.realservers import need

EVAL = "60m"
LATENCY_BUCKETS = ("0.01", "1.28", "2.56", "5.12", "10.24", "20.48")


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def cost(per_minute: str) -> list[dict[str, str]]:
    return [
        series(
            "aivitals_cost_usd_total",
            {"provider": "openai", "model": "m", "feature": "search", "team": "t"},
            f"0+{per_minute}x60",
        )
    ]


def requests(**per_minute: str) -> list[dict[str, str]]:
    out = []
    for key, rate in per_minute.items():
        status, _, error_type = key.partition("_")
        labels = {"provider": "openai", "model": "m", "operation": "chat", "status": status}
        if error_type:
            labels["error_type"] = error_type
        out.append(series("aivitals_requests_total", labels, f"0+{rate}x60"))
    return out


def latency(in_bucket: str) -> list[dict[str, str]]:
    """10 calls a minute, every one in the bucket whose upper bound is ``in_bucket``."""
    out = []
    for bound in (*LATENCY_BUCKETS, "+Inf"):
        inside = bound == "+Inf" or float(bound) >= float(in_bucket)
        out.append(
            series(
                "aivitals_request_duration_seconds_bucket",
                {"provider": "openai", "model": "m", "operation": "chat", "le": bound},
                "0+10x60" if inside else "0x60",
            )
        )
    return out


def quality(mean: str) -> list[dict[str, str]]:
    labels = {"name": "helpfulness", "model": "m", "feature": "search"}
    return [
        series("aivitals_quality_score_sum", labels, f"0+{mean}x60"),
        series("aivitals_quality_score_count", labels, "0+1x60"),
    ]


def evaluator(name: str, found: str, evaluated: str = "0+10x60") -> list[dict[str, str]]:
    """An evaluator's 0/1 scores: ``found`` is the sum's series (the 1s), ``evaluated`` the count."""
    labels = {"name": name, "model": "m", "feature": "search"}
    return [
        series("aivitals_quality_score_sum", labels, found),
        series("aivitals_quality_score_count", labels, evaluated),
    ]


def tokens(input_: str, output: str) -> list[dict[str, str]]:
    labels = {"provider": "openai", "model": "m"}
    return [
        series("aivitals_tokens_total", {**labels, "type": "input"}, f"0+{input_}x60"),
        series("aivitals_tokens_total", {**labels, "type": "output"}, f"0+{output}x60"),
        # Parts of the input, in their own metric: must not count twice.
        series("aivitals_input_tokens_total", {**labels, "kind": "cache_read"}, "0+90000x60"),
        # A replica from before the split still reports parts as types: nor must these.
        series("aivitals_tokens_total", {**labels, "type": "cached_input"}, "0+90000x60"),
    ]


def cache(hits: str, misses: str) -> list[dict[str, str]]:
    labels = {"provider": "openai", "model": "m", "level": "exact"}
    return [
        series("aivitals_cache_requests_total", {**labels, "result": "hit"}, f"0+{hits}x60"),
        series("aivitals_cache_requests_total", {**labels, "result": "miss"}, f"0+{misses}x60"),
        # Bypasses are not lookups.
        series("aivitals_cache_requests_total", {**labels, "result": "bypass"}, "0+100x60"),
    ]


# rule: (breaching series, expected alerts, healthy series)
p95_ms = (5.12 + (10.24 - 5.12) * 0.95) * 1000  # all calls in (5.12 s, 10.24 s]
p99_ms = (5.12 + (10.24 - 5.12) * 0.99) * 1000
CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, Any]], list[dict[str, str]]]] = {
    "DailyBudgetWarning": (
        cost("1"),  # $60 by minute 60
        [
            {
                "exp_labels": {"severity": "warning"},
                "exp_annotations": {"summary": "Spend today is $60.00, above the $50 daily budget"},
            }
        ],
        cost("0.5"),
    ),
    "DailyBudgetCritical": (
        cost("2"),
        [
            {
                "exp_labels": {"severity": "critical"},
                "exp_annotations": {
                    "summary": "Spend today is $120.00, above the $100 daily budget"
                },
            }
        ],
        cost("1"),
    ),
    "CostPerRequestSpike": (
        cost("0.5") + requests(ok="1"),  # $0.50 a request
        [
            {
                "exp_labels": {"severity": "warning", "model": "m"},
                "exp_annotations": {"summary": "m costs $0.5000 per request (over $0.10)"},
            }
        ],
        cost("0.5") + requests(ok="10"),
    ),
    "LatencyP95High": (
        latency("10.24"),
        [
            {
                "exp_labels": {"severity": "warning", "model": "m"},
                "exp_annotations": {"summary": f"m p95 latency is {p95_ms:.0f} ms (over 5000 ms)"},
            }
        ],
        latency("2.56"),
    ),
    "LatencyP99High": (
        latency("10.24"),
        [
            {
                "exp_labels": {"severity": "critical", "model": "m"},
                "exp_annotations": {"summary": f"m p99 latency is {p99_ms:.0f} ms (over 10000 ms)"},
            }
        ],
        latency("5.12"),
    ),
    "QualityDegraded": (
        # A refusal rate of 2% is a mean of 0.02, and no degraded quality: it stays out.
        [*quality("0.6"), *evaluator("refusal", "0+0.2x60")],
        [
            {
                "exp_labels": {"severity": "warning", "score": "helpfulness"},
                "exp_annotations": {"summary": "Mean helpfulness score is 0.60 (under 0.7)"},
            }
        ],
        [*quality("0.9"), *evaluator("refusal", "0+0.2x60"), *evaluator("pii_leak", "0x60")],
    ),
    "RefusalRateHigh": (
        evaluator("refusal", "0+1x60"),  # 1 refusal in 10 answers a minute
        [
            {
                "exp_labels": {"severity": "warning", "model": "m"},
                "exp_annotations": {
                    "summary": "m refused 10% of answers in the last hour (over 5%)"
                },
            }
        ],
        evaluator("refusal", "0+0.4x60"),  # 4%
    ),
    "PiiLeak": (
        evaluator("pii_leak", "0x58 1+0x1"),  # one leak, two minutes ago, in 600 answers
        [
            {
                "exp_labels": {"severity": "critical", "model": "m", "feature": "search"},
                "exp_annotations": {
                    "summary": "m answers for search leaked personal data or a secret "
                    f"({1 / 600 * 100:.4g}% of them in the last hour)"
                },
            }
        ],
        evaluator("pii_leak", "0x60"),
    ),
    "QualityCriticalDrop": (
        quality("0.25"),
        [
            {
                "exp_labels": {"severity": "critical", "score": "helpfulness"},
                "exp_annotations": {"summary": "Mean helpfulness score is 0.25 (under 0.5)"},
            }
        ],
        quality("0.6"),
    ),
    "HighTokenUsage": (
        tokens("20000", "5000"),  # 1.5M by minute 60
        [
            {
                "exp_labels": {"severity": "warning"},
                "exp_annotations": {"summary": "1500000 tokens used today (over 1000000)"},
            }
        ],
        tokens("10000", "5000"),  # 0.9M
    ),
    "ErrorRateHigh": (
        # 18 ok, 2 rate-limited (2/21 = 9.5%), 1 timeout (1/21 = 4.8%: below 5%) a minute.
        requests(ok="18", error_rate_limit="2", error_timeout="1"),
        [
            {
                "exp_labels": {"severity": "warning", "error_type": "rate_limit"},
                "exp_annotations": {
                    "summary": f"rate_limit errors are {2 / 21 * 100:.4g}% of requests (over 5%)"
                },
            }
        ],
        requests(ok="99", error_rate_limit="1"),
    ),
    "CacheHitRatioLow": (
        cache("1", "9"),
        [
            {
                "exp_labels": {"severity": "warning"},
                "exp_annotations": {"summary": "Response-cache hit ratio is 10% (under 20%)"},
            }
        ],
        cache("5", "5"),
    ),
}


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    export = export_prometheus(parse_rules(default_rules_text()))
    # Drift and forecasts have no PromQL form (tests/test_alerts_kinds_promql.py).
    assert [name for name, _ in export.skipped] == ["DriftFromBaseline", "SpendForecastOverBudget"]
    path = tmp_path / "aivitals.rules.yml"
    path.write_text(export.text())
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_exported_rules(exported: Path) -> None:
    promtool = need("promtool", package="prometheus")
    result = run(promtool, "check", "rules", str(exported))
    assert result.returncode == 0, result.stdout + result.stderr
    # 12 threshold rules, ErrorRateAnomaly and the series it records.
    assert "SUCCESS: 14 rules found" in result.stdout


def test_every_exported_default_rule_fires_on_breaching_series_only(
    exported: Path, tmp_path: Path
) -> None:
    promtool = need("promtool", package="prometheus")
    tests = []
    for name, (breaching, alerts, healthy) in CASES.items():
        expected = [
            {**alert, "exp_labels": {"alertname": name, **alert["exp_labels"]}} for alert in alerts
        ]
        tests.append(
            {
                "name": f"{name} fires",
                "interval": "1m",
                "input_series": breaching,
                "alert_rule_test": [{"eval_time": EVAL, "alertname": name, "exp_alerts": expected}],
            }
        )
        tests.append(
            {
                "name": f"{name} stays quiet",
                "interval": "1m",
                "input_series": healthy,
                "alert_rule_test": [{"eval_time": EVAL, "alertname": name, "exp_alerts": []}],
            }
        )
    spec = tmp_path / "aivitals.rules.test.yml"
    spec.write_text(
        yaml.safe_dump(
            {"rule_files": [exported.name], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    result = run(promtool, "test", "rules", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_promql_cannot_express_are_listed_with_the_reason() -> None:
    rules = parse_rules(
        "rules:\n"
        "  - {name: Monthly, signal: spend, window: month, op: '>', threshold: 1000}\n"
        "  - {name: Ttft, signal: query, measure: ttft_p95_ms, op: '>', threshold: 900}\n"
        "  - {name: TeamLatency, signal: latency_p95, group_by: [team], op: '>', threshold: 1}\n"
        "  - {name: TeamSpend, signal: spend, group_by: [team], op: '>', threshold: 1}\n"
    )
    export = export_prometheus(rules)
    assert [r["alert"] for r in export.rules] == ["TeamSpend"]
    reasons = dict(export.skipped)
    assert set(reasons) == {"Monthly", "Ttft", "TeamLatency"}
    assert "calendar month" in reasons["Monthly"]
    assert "store" in reasons["Ttft"]
    assert "no team label" in reasons["TeamLatency"]
