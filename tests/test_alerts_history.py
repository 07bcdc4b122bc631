"""Alerts that see the history: with a store, ``source: auto`` answers from it.

The server's live windows begin empty at every start and never see the calls other processes
(SDK applications) write into the same store, so ``serve --alerts`` with the default rules never
fired on a store that ``aivitals alerts check`` said would fire, and after a restart the daily
spend rules counted from $0. The engine is built here as ``aivitals serve`` builds it: the
runtime's live windows and the store's queries.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from aivitals.alerts import AlertEngine, default_rules_text, parse_rules
from aivitals.model import Call
from aivitals.query import Queries
from aivitals.runtime import Runtime, build_runtime
from aivitals.store.sql import SqlStore
from tests.test_alerts_served import wait_until
from tests.test_server_serve import AIVITALS, start

DAILY = ("DailyBudgetCritical", "DailyBudgetWarning")

# Another process (an application with the SDK, say) writing $120 of calls into the store.
WRITER = """
import sys
from datetime import datetime
from decimal import Decimal
from aivitals.model import Call
from aivitals.store.sql import SqlStore

store = SqlStore.open(sys.argv[1])
started = datetime.fromisoformat(sys.argv[2])
store.write([Call(provider="openai", model="gpt-4o", latency_ms=900.0, input_tokens=1000,
                  output_tokens=100, cost_usd=Decimal("40"), started_at=started)
             for _ in range(3)], [])
store.close()
"""


def earlier_today(now: datetime) -> datetime:
    """A minute before ``now``, or half-way since midnight if that is sooner (still today)."""
    since_midnight = now - now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now - min(timedelta(minutes=1), since_midnight / 2)


def written_elsewhere(db: Path, now: datetime) -> None:
    subprocess.run(
        [sys.executable, "-c", WRITER, str(db), earlier_today(now).isoformat()], check=True
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "aivitals.db"
    SqlStore.open(path).close()
    yield path


def as_serve_builds(store: SqlStore, clock: list[float]) -> tuple[Runtime, AlertEngine]:
    runtime = build_runtime(store=store, endpoint=False, prometheus=False)
    engine = AlertEngine(
        parse_rules(default_rules_text()),
        windows=runtime.windows,
        queries=Queries(store.engine),
        notifiers={},
        clock=lambda: clock[0],
    )
    return runtime, engine


def firing(engine: AlertEngine) -> dict[str, float | None]:
    return {
        alert.rule: alert.value for alert in engine.state.alerts.values() if alert.phase == "firing"
    }


def test_the_daily_budget_rules_fire_on_spend_another_process_wrote(db: Path) -> None:
    now = datetime.now(UTC)
    written_elsewhere(db, now)
    store = SqlStore.open(db)
    clock = [now.timestamp()]
    runtime, engine = as_serve_builds(store, clock)
    try:
        findings = {f.rule.name: f for f in engine.check()}
        for name in DAILY:
            assert (findings[name].source, findings[name].value) == ("store", 120.0)
        engine.run_once()
        clock[0] += 61  # their `for` is 1m
        engine.run_once()
        assert {name: firing(engine).get(name) for name in DAILY} == {n: 120.0 for n in DAILY}
    finally:
        runtime.recorder.close()
        store.close()


def test_after_a_restart_the_days_spend_is_not_counted_from_zero(db: Path) -> None:
    now = datetime.now(UTC)
    store = SqlStore.open(db)
    clock = [now.timestamp()]
    runtime, engine = as_serve_builds(store, clock)
    started = earlier_today(now)
    # The recorder prices: gpt-4o lists $2.50 per million input tokens and $10 per million
    # output tokens, so 4M in and 3M out are $10 + $30 = $40 a call.
    for _ in range(3):
        runtime.recorder.record(
            Call(
                provider="openai",
                model="gpt-4o",
                latency_ms=900.0,
                input_tokens=4_000_000,
                output_tokens=3_000_000,
                started_at=started,
            )
        )
    runtime.recorder.close()  # flushes to the store, as serve's shutdown does
    store.close()

    store = SqlStore.open(db)
    runtime, engine = as_serve_builds(store, clock)  # the restarted server, empty windows
    try:
        findings = {f.rule.name: f for f in engine.check()}
        assert {name: findings[name].value for name in DAILY} == {n: 120.0 for n in DAILY}
    finally:
        runtime.recorder.close()
        store.close()


@pytest.mark.slow
def test_serve_alerts_with_the_default_rules_sees_what_alerts_check_sees(
    db: Path, tmp_path: Path
) -> None:
    written_elsewhere(db, datetime.now(UTC))
    checked = subprocess.run(
        [AIVITALS, "alerts", "check", "--db", str(db)], check=False, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert all(name in checked.stdout for name in DAILY), checked.stdout
    rules = tmp_path / "alerts.yaml"
    rules.write_text(default_rules_text())
    process, url = start("--db", str(db), "--alerts", str(rules))
    try:

        def daily() -> dict[str, object]:
            alerts = httpx.get(f"{url}/api/v1/alerts").json()["alerts"]
            return {a["rule"]: a["value"] for a in alerts if a["rule"] in DAILY}

        # Pending at the first evaluation; firing needs their `for` of 1m, not waited for here.
        wait_until(lambda: len(daily()) == 2, "the daily budget alerts")
        assert daily() == {name: 120.0 for name in DAILY}
    finally:
        process.terminate()
        process.wait(30)
        if process.stderr is not None:
            process.stderr.close()
