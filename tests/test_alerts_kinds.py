"""The rule kinds anomaly, drift, forecast and burn_rate through the alert engine.

One generated 8-day history is written through the store: a stationary workload with, on the
last night, gpt-a's error rate at 60% and gpt-b 1.5 times slower from 03:00 to 04:00, and a burst
of expensive gpt-c calls from 01:00 to 04:00. Each kind goes pending, fires, notifies a real
webhook receiver once, survives a restart without notifying again, and resolves once the night
is over; the clock is injected.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from aivitals.alerts import AlertEngine, RuleFileError, parse_rules
from aivitals.gateway.budgets import Budget
from aivitals.model import Call
from aivitals.query import Queries
from aivitals.store.sql import SqlStore
from tests.support.alerts import receiving
from tests.support.histories import Spike, history

START = datetime(2026, 11, 2, tzinfo=UTC)
NIGHT = START + timedelta(days=7, hours=3)
BURST = START + timedelta(days=7, hours=1)


def burst() -> list[Call]:
    """50 calls an hour at $0.10 each, 01:00 to 04:00 on the last day: $15 in three hours."""
    return [
        Call(
            id=f"burst-{i}",
            provider="openai",
            model="gpt-c",
            started_at=BURST + timedelta(seconds=i * 72),
            latency_ms=300.0,
            cost_usd=Decimal("0.10"),
        )
        for i in range(150)
    ]


@pytest.fixture(scope="module")
def queries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Queries]:
    spikes = [
        Spike("gpt-a", NIGHT, NIGHT + timedelta(hours=1), error_rate=0.6),
        Spike("gpt-b", NIGHT, NIGHT + timedelta(hours=1), latency=1.5),
    ]
    calls = history(START, START + timedelta(days=8), seed=23, spikes=spikes) + burst()
    store = SqlStore.open(tmp_path_factory.mktemp("kinds") / "calls.db")
    for i in range(0, len(calls), 5000):
        store.write(calls[i : i + 5000], [])
    try:
        yield Queries(store.engine)
    finally:
        store.close()


@dataclass(frozen=True)
class Case:
    rule: str
    at: datetime  # when it first breaches
    labels: dict[str, str]


CASES = {
    "anomaly": Case(
        "{name: ErrorAnomaly, kind: anomaly, series: error_rate, group_by: [model], for: 5m,"
        " summary: '{model} error rate {current:.0%} against {baseline:.1%} usually'}",
        NIGHT + timedelta(hours=1),
        {"model": "gpt-a"},
    ),
    "drift": Case(
        "{name: LatencyDrift, kind: drift, signals: [latency_ms], group_by: [model],"
        " min_samples: 15, for: 5m, summary: '{drift}'}",
        NIGHT + timedelta(hours=1),
        {"model": "gpt-b", "signal": "latency_ms"},
    ),
    "burn_rate": Case(
        "{name: FastBurn, kind: burn_rate, budget_usd: 300, window: month, threshold: 5,"
        " for: 5m, summary: 'burning {short:.1f}x (1h) and {long:.1f}x (6h) the budget pace'}",
        NIGHT + timedelta(hours=1),
        {},
    ),
    "forecast": Case(
        "{name: DayOverBudget, kind: forecast, budget_usd: 12, window: today, for: 5m,"
        " summary: 'day-end spend ${projected:.2f} is {value:.0%} of ${budget:.0f}'}",
        NIGHT + timedelta(hours=1),
        {},
    ),
}


def rules_text(case: Case, url: str) -> str:
    return (
        "notifiers:\n"
        f"  - {{name: hook, type: webhook, url: '{url}/hook'}}\n"
        "rules:\n"
        f"  - {case.rule}\n"
    )


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_kind_goes_pending_fires_once_survives_a_restart_and_resolves(
    kind: str, queries: Queries, tmp_path: Path
) -> None:
    case = CASES[kind]
    clock = [case.at.timestamp()]
    state = tmp_path / "alerts.json"
    with receiving() as receiver:
        rules = parse_rules(rules_text(case, receiver.url))
        name = rules.rules[0].name

        def engine() -> AlertEngine:
            return AlertEngine(rules, queries=queries, state_path=state, clock=lambda: clock[0])

        first = engine()
        first.run_once()
        assert first.rule_errors == {}
        mine = [a for a in first.alerts() if a.phase != "inactive"]
        assert [(a.phase, a.labels) for a in mine] == [
            ("pending", {"alertname": name, "severity": "warning", **case.labels})
        ]
        assert receiver.received == []
        for _ in range(5):
            clock[0] += 60
            first.run_once()
        assert [a.phase for a in first.alerts()] == ["firing"]
        assert [r.body["status"] for r in receiver.received] == ["firing"]
        fired = receiver.received[0].body["alert"]
        assert fired["labels"] == {"alertname": name, "severity": "warning", **case.labels}

        # A new process on the same state: still firing, and not told twice.
        clock[0] += 60
        second = engine()
        assert [a.phase for a in second.alerts()] == ["firing"]
        second.run_once()
        assert [r.body["status"] for r in receiver.received] == ["firing"]

        # The next night is quiet (and no call at all comes in): it resolves, once.
        clock[0] = (START + timedelta(days=8, hours=2)).timestamp()
        second.run_once()
        clock[0] += 60
        second.run_once()
        assert [a.phase for a in second.alerts()] == ["resolved"]
        assert [r.body["status"] for r in receiver.received] == ["firing", "resolved"]
    summary = fired["summary"]
    assert "{" not in summary and "nan" not in summary, summary
    print(summary)


def test_the_anomaly_summary_names_the_figures(queries: Queries) -> None:
    rules = parse_rules("rules:\n  - " + CASES["anomaly"].rule)
    engine = AlertEngine(
        rules, queries=queries, notifiers={}, clock=lambda: NIGHT.timestamp() + 3600
    )
    engine.run_once()
    firing = {a.labels["model"]: a for a in engine.alerts()}
    assert sorted(firing) == ["gpt-a"]
    assert firing["gpt-a"].summary.startswith("gpt-a error rate ")
    assert firing["gpt-a"].value is not None and firing["gpt-a"].value >= 4


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ("{name: A, kind: anomaly}", "kind: anomaly needs series"),
        ("{name: A, kind: anomaly, series: tokens}", "series"),
        ("{name: F, kind: forecast}", "needs budget_usd"),
        ("{name: F, kind: forecast, budget_usd: 10, window: 1h}", "window: today or month"),
        ("{name: B, kind: burn_rate, budget_usd: 10, windows: [1h]}", "two windows"),
        ("{name: D, kind: drift, signals: [speed]}", "no signal 'speed'"),
        ("{name: D, kind: drift, baseline: yesterday}", "pinned:NAME"),
        ("{name: S, kind: anomaly, series: spend, signal: spend}", "signal goes with threshold"),
        ("{name: T, signal: spend, op: '>', threshold: 1, budget_usd: 3}", "budget_usd"),
        ("{name: N, op: '>', threshold: 1}", "needs signal"),
    ],
)
def test_rules_of_the_new_kinds_are_refused_with_the_reason(rule: str, reason: str) -> None:
    with pytest.raises(RuleFileError) as raised:
        parse_rules(f"rules:\n  - {rule}\n")
    assert reason in str(raised.value)
    assert str(raised.value).startswith("<rules>:2: rule ")


def test_burn_rate_reads_the_gateways_budgets_one_named_value_over_every_value(
    tmp_path: Path,
) -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)  # November: $720 a month is $1 an hour
    spend = {"search": "0.30", "chat": "0.05", "ads": "0.30"}  # each a call every 6 minutes
    calls = [
        Call(
            id=f"{feature}-{i}",
            provider="openai",
            model="gpt-a",
            feature=feature,
            started_at=now - timedelta(minutes=6 * i + 3),
            latency_ms=100.0,
            cost_usd=Decimal(usd),
        )
        for feature, usd in spend.items()
        for i in range(60)
    ]
    store = SqlStore.open(tmp_path / "calls.db")
    store.write(calls, [])
    budgets = [
        Budget(scope="feature", period="month", usd=Decimal("720")),
        Budget(scope="feature", period="month", usd=Decimal("7200"), value="ads"),
    ]
    rules = parse_rules(
        "rules:\n  - {name: Burn, kind: burn_rate, budget: gateway, window: month}\n"
    )
    try:
        engine = AlertEngine(
            rules, queries=Queries(store.engine), notifiers={}, budgets=budgets, clock=now.timestamp
        )
        found = {f.labels["feature"]: f for f in engine.check()}
    finally:
        store.close()
    assert engine.rule_errors == {}
    # $3 an hour against $1 (every feature's budget); ads has its own, ten times larger.
    assert found["search"].value == pytest.approx(3.0)
    assert found["chat"].value == pytest.approx(0.5)
    assert found["ads"].value == pytest.approx(0.3)
    assert sorted(k for k, f in found.items() if f.breached) == ["search"]
