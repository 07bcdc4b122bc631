"""Rules answered by the store (windows beyond the live horizon, any filter, ``signal: query``).

Calls are written to a real SQLite store; each expected value is worked out here from the calls
as written.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from aivitals.alerts import AlertEngine, MemoryNotifier, parse_rules
from aivitals.model import Call, Score
from aivitals.query import Queries
from aivitals.store.sql import SqlStore

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)

# (minutes ago, model, team, user, status, error type, cost, latency ms, output tokens)
ROWS = [
    (10, "gpt-4o", "search", "ann", "ok", None, "0.40", 1200.0, 300),
    (20, "gpt-4o", "search", "bob", "ok", None, "0.35", 900.0, 250),
    (30, "gpt-4o", "support", "ann", "error", "rate_limit", "0", 100.0, 0),
    (40, "gpt-4o-mini", "support", "cy", "ok", None, "0.01", 300.0, 90),
    (50, "gpt-4o-mini", "support", "cy", "error", "timeout", "0", 30000.0, 0),
    (70, "gpt-4o-mini", "search", "bob", "error", "rate_limit", "0", 80.0, 0),
    (90, "gpt-4o-mini", "search", "ann", "ok", None, "0.02", 450.0, 120),
    # Yesterday (UTC): outside "today" and outside 2h.
    (13 * 60, "gpt-4o", "search", "ann", "ok", None, "5.00", 800.0, 1000),
]


def make(row: tuple[int, str, str, str, str, str | None, str, float, int]) -> Call:
    ago, model, team, user, status, error_type, cost, latency, output = row
    return Call(
        id=f"call-{ago}",
        provider="openai",
        model=model,
        team=team,
        user=user,
        status=status,  # type: ignore[arg-type]
        error_type=error_type,  # type: ignore[arg-type]
        cost_usd=Decimal(cost),
        latency_ms=latency,
        output_tokens=output,
        started_at=NOW - timedelta(minutes=ago),
    )


@pytest.fixture
def queries(tmp_path: Path) -> Iterator[Queries]:
    store = SqlStore.open(tmp_path / "calls.db")
    scores = [
        Score(call_id="call-10", name="helpfulness", value=0.4, created_at=NOW),
        Score(call_id="call-20", name="helpfulness", value=0.6, created_at=NOW),
        Score(call_id="call-40", name="helpfulness", value=0.8, created_at=NOW),
    ]
    store.write([make(row) for row in ROWS], scores)
    try:
        yield Queries(store.engine)
    finally:
        store.close()


RULES = """\
rules:
  - {name: TeamSpend2h, signal: spend, window: 2h, group_by: [team], op: ">", threshold: 0.1}
  - {name: SpendToday, signal: spend, window: today, op: ">", threshold: 0.5}
  - {name: ErrorsByType, signal: error_rate, window: 2h, group_by: [error_type], op: ">", threshold: 0.2}
  - {name: RateLimits, signal: error_rate, error_type: rate_limit, window: 2h, op: ">", threshold: 0.1}
  - {name: AnnSlow, signal: latency_p50, window: 2h, filters: {user: ann}, op: ">", threshold: 400}
  - {name: Helpfulness, signal: quality, score: helpfulness, window: 2h, op: "<", threshold: 0.7}
  - {name: OutputTokens, signal: query, measure: output_tokens, window: 2h, group_by: [model], op: ">", threshold: 300}
"""


def test_the_store_answers_every_kind_of_rule(queries: Queries) -> None:
    engine = AlertEngine(parse_rules(RULES), queries=queries, notifiers={}, clock=NOW.timestamp)
    found = {(f.rule.name, tuple(sorted(f.labels.items()))): f for f in engine.check()}
    assert engine.rule_errors == {}

    def value(rule: str, **group: str) -> float | None:
        labels = {"alertname": rule, "severity": "warning", **group}
        return found[(rule, tuple(sorted(labels.items())))].value

    recent = [r for r in ROWS if r[0] < 120]
    by_team: dict[str, Decimal] = {}
    for r in recent:
        by_team[r[2]] = by_team.get(r[2], Decimal(0)) + Decimal(r[6])
    assert value("TeamSpend2h", team="search") == pytest.approx(float(by_team["search"]))
    assert value("TeamSpend2h", team="support") == pytest.approx(float(by_team["support"]))
    today = sum(Decimal(r[6]) for r in ROWS if r[0] < 12 * 60)
    assert value("SpendToday") == pytest.approx(float(today))

    for kind in ("rate_limit", "timeout"):
        share = sum(1 for r in recent if r[5] == kind) / len(recent)
        assert value("ErrorsByType", error_type=kind) == pytest.approx(share)
    assert value("RateLimits") == pytest.approx(
        sum(1 for r in recent if r[5] == "rate_limit") / len(recent)
    )

    ann = sorted(r[7] for r in recent if r[3] == "ann")
    # Within 1%: a user filter reads the whole hours from the user rollups' sketches.
    assert value("AnnSlow") == pytest.approx(ann[int(0.5 * (len(ann) - 1))], rel=0.01)
    assert value("Helpfulness") == pytest.approx((0.4 + 0.6 + 0.8) / 3)
    for model in ("gpt-4o", "gpt-4o-mini"):
        expected = sum(r[8] for r in recent if r[1] == model)
        assert value("OutputTokens", model=model) == expected

    firing = sorted(
        (f.rule.name, f.labels.get("team") or f.labels.get("error_type") or f.labels.get("model"))
        for f in found.values()
        if f.breached
    )
    assert firing == [
        ("AnnSlow", None),
        ("ErrorsByType", "rate_limit"),
        ("Helpfulness", None),
        ("OutputTokens", "gpt-4o"),
        ("RateLimits", None),
        ("SpendToday", None),
        ("TeamSpend2h", "search"),
    ]


def test_store_rules_fire_and_notify_through_the_engine(queries: Queries) -> None:
    memory = MemoryNotifier()
    clock = [NOW.timestamp()]
    engine = AlertEngine(
        parse_rules(RULES), queries=queries, notifiers={"m": memory}, clock=lambda: clock[0]
    )
    engine.run_once()
    assert sorted(n.rule for n in memory.sent) == [
        "AnnSlow",
        "ErrorsByType",
        "Helpfulness",
        "OutputTokens",
        "RateLimits",
        "SpendToday",
        "TeamSpend2h",
    ]
    clock[0] += 3 * 3600  # every 2h window is empty now; "today" still holds the day's spend
    engine.run_once()
    resolved = sorted(n.rule for n in memory.sent if n.status == "resolved")
    assert resolved == [
        "AnnSlow",
        "ErrorsByType",
        "Helpfulness",
        "OutputTokens",
        "RateLimits",
        "TeamSpend2h",
    ]
