"""The new rule kinds in the Prometheus export: burn_rate and anomaly pass `promtool check rules`
and `promtool test rules` (firing on series that breach them, quiet on series that do not);
drift and forecast are listed as not exportable, with the reason.

Series are counters sampled every 10 minutes from time 0 (1970-01-01, a 31-day month); every
expected outcome is worked out here from the series.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any

import yaml

from aivitals.alerts import default_rules_text, export_prometheus, parse_rules
from tests.support.realservers import need

STEP_MIN = 10
BURN = (
    "{name: FastBurn, kind: burn_rate, budget_usd: 744, window: month, threshold: 5,"
    " windows: [1h, 6h], summary: 'burning the monthly budget fast'}"
)


def counter(per_step: list[float]) -> str:
    """The cumulative values of a counter growing by ``per_step[i]`` at step i (from 0)."""
    total, values = 0.0, ["0"]
    for step in per_step:
        total += step
        values.append(f"{total:g}")
    return " ".join(values)


def cost(per_step: list[float]) -> dict[str, str]:
    labels = 'provider="openai",model="m",feature="search",team="t"'
    return {"series": f"aivitals_cost_usd_total{{{labels}}}", "values": counter(per_step)}


def requests(status: str, per_step: list[float]) -> dict[str, str]:
    labels = f'provider="openai",model="m",operation="chat",status="{status}"'
    if status == "error":
        labels += ',error_type="provider_down"'
    return {"series": f"aivitals_requests_total{{{labels}}}", "values": counter(per_step)}


def exported(tmp_path: Path, text: str) -> Path:
    export = export_prometheus(parse_rules(text))
    path = tmp_path / "kinds.rules.yml"
    path.write_text(export.text())
    return path


def promtool_test(tmp_path: Path, rules: Path, tests: list[dict[str, Any]]) -> None:
    promtool = need("promtool", package="prometheus")
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    spec = tmp_path / "kinds.test.yml"
    spec.write_text(
        yaml.safe_dump(
            {"rule_files": [rules.name], "evaluation_interval": f"{STEP_MIN}m", "tests": tests},
            sort_keys=False,
        )
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(spec)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def case(
    name: str, series: list[dict[str, str]], eval_time: str, alerts: list[Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "interval": f"{STEP_MIN}m",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": eval_time, "alertname": name.split(maxsplit=1)[0], "exp_alerts": alerts}
        ],
    }


def test_burn_rate_fires_only_when_both_windows_burn_fast(tmp_path: Path) -> None:
    # January: $744 a month is $1 an hour. Six hours at $6 an hour burn 6x in both windows.
    steps = 36  # six hours of 10-minute steps
    fast = [1.0] * steps
    # $6 in the last half hour: the short window burns 6.3x, the long one 1.2x.
    late = [0.05] * (steps - 3) + [2.0] * 3
    # $48 in the first four hours, nothing since: the long window burns 8x, the short one 0.
    early = [2.0] * 24 + [0.0] * 12
    fired = [
        {
            "exp_labels": {"severity": "warning"},
            "exp_annotations": {"summary": "burning the monthly budget fast"},
        }
    ]
    rules = exported(tmp_path, f"rules:\n  - {BURN}\n")
    promtool_test(
        tmp_path,
        rules,
        [
            case("FastBurn fast", [cost(fast)], "6h", fired),
            case("FastBurn late", [cost(late)], "6h", []),
            case("FastBurn early", [cost(early)], "6h", []),
        ],
    )


def day_of_errors(day: int, spike: bool) -> list[float]:
    """Errors per 10 minutes over one day: 1 on even days, 2 on odd ones; 40 from 03:00 to
    04:00 when ``spike``."""
    per_step = [1.0 if day % 2 == 0 else 2.0] * (24 * 60 // STEP_MIN)
    if spike:
        for step in range(3 * 6, 4 * 6):
            per_step[step] = 40.0
    return per_step


def test_the_error_rate_anomaly_default_fires_on_a_night_spike_only(tmp_path: Path) -> None:
    days = 8
    ok = [100.0] * (days * 24 * 60 // STEP_MIN)
    quiet = [e for d in range(days) for e in day_of_errors(d, spike=False)]
    spiked = [e for d in range(days) for e in day_of_errors(d, spike=d == days - 1)]
    rules = exported(tmp_path, default_rules_text())
    eval_time = f"{(days - 1) * 24 + 4}h"  # 04:00 on the last day
    fired = [
        {
            "exp_labels": {"severity": "warning", "model": "m"},
            "exp_annotations": {
                "summary": "m error rate is ? against ? at this hour usually (z "
                + f"{z_of_spike(quiet, spiked, days):.1f})"
            },
        }
    ]
    promtool_test(
        tmp_path,
        rules,
        [
            case(
                "ErrorRateAnomaly spike",
                [requests("ok", ok), requests("error", spiked)],
                eval_time,
                fired,
            ),
            case(
                "ErrorRateAnomaly quiet",
                [requests("ok", ok), requests("error", quiet)],
                eval_time,
                [],
            ),
        ],
    )


def z_of_spike(quiet: list[float], spiked: list[float], days: int) -> float:
    """The exported z at 04:00 on the last day: the last hour's error rate against the same hour
    of the 7 days before (mean and population standard deviation)."""
    per_day = 24 * 60 // STEP_MIN
    end = (days - 1) * per_day + 4 * 6

    def rate(errors: list[float], stop: int) -> float:
        e = sum(errors[stop - 6 : stop])
        return e / (e + 100.0 * 6)

    now = rate(spiked, end)
    past = [rate(quiet, end - k * per_day) for k in range(1, 8)]
    mean = sum(past) / 7
    sd = math.sqrt(sum(p * p for p in past) / 7 - mean * mean)
    return (now - mean) / sd


def test_drift_and_forecast_are_listed_as_not_exportable() -> None:
    export = export_prometheus(parse_rules(default_rules_text()))
    reasons = dict(export.skipped)
    assert sorted(reasons) == ["DriftFromBaseline", "SpendForecastOverBudget"]
    assert "PromQL cannot" in reasons["DriftFromBaseline"]
    assert "no such model" in reasons["SpendForecastOverBudget"]
    gateway = parse_rules(
        "rules:\n  - {name: G, kind: burn_rate, budget: gateway, window: today}\n"
    )
    assert "gateway's config" in dict(export_prometheus(gateway).skipped)["G"]
