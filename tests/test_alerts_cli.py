"""``aivitals alerts`` through the real CLI, and `AlertService` (the engine on its thread)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aivitals.alerts import AlertService, MemoryNotifier, default_rules_text
from aivitals.cli import app
from aivitals.model import Call
from aivitals.store.sql import SqlStore
from aivitals.windows import LiveWindows
from tests.support.alerts import Receiver, receiving
from tests.support.realservers import poll

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as state:
        yield state


def test_init_writes_the_defaults_once(tmp_path: Path) -> None:
    path = tmp_path / "alerts.yaml"
    code, output = invoke("alerts", "init", "--path", str(path))
    assert code == 0, output
    assert path.read_text() == default_rules_text()
    code, output = invoke("alerts", "init", "--path", str(path))
    assert code == 2
    assert "exists" in output
    assert invoke("alerts", "init", "--path", str(path), "--force")[0] == 0


def test_check_prints_what_would_fire_against_the_store(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    store = SqlStore.open(db)
    now = datetime.now(UTC)
    slow = [
        Call(
            provider="openai",
            model="gpt-4o",
            latency_ms=7000.0,
            cost_usd=Decimal("0.02"),
            started_at=now - timedelta(minutes=2, seconds=i),
        )
        for i in range(10)
    ]
    store.write(slow, [])
    store.close()
    rules = tmp_path / "alerts.yaml"
    rules.write_text(default_rules_text())
    code, output = invoke("alerts", "check", "--rules", str(rules), "--db", str(db))
    assert code == 0, output
    lines = [line for line in output.splitlines() if "would fire" in line and "│" in line]
    assert len(lines) == 1
    assert "LatencyP95High" in lines[0]
    assert "model=gpt-4o" in lines[0]
    assert output.rstrip().endswith("1 would fire")


def slow_store(path: Path) -> Path:
    """A store whose last minutes breach the default p95 latency rule for gpt-4o."""
    store = SqlStore.open(path)
    now = datetime.now(UTC)
    store.write(
        [
            Call(
                provider="openai",
                model="gpt-4o",
                latency_ms=7000.0,
                cost_usd=Decimal("0.02"),
                started_at=now - timedelta(minutes=2, seconds=i),
            )
            for i in range(10)
        ],
        [],
    )
    store.close()
    return path


def test_check_fails_on_firing_only_when_asked(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(default_rules_text())
    firing = str(slow_store(tmp_path / "slow.db"))
    quiet = str(tmp_path / "quiet.db")
    SqlStore.open(quiet).close()
    check = ("alerts", "check", "--rules", str(rules))
    assert invoke(*check, "--db", firing)[0] == 0
    code, output = invoke(*check, "--db", firing, "--fail-on-firing")
    assert code == 1, output
    assert output.rstrip().endswith("1 would fire")
    code, output = invoke(*check, "--db", quiet, "--fail-on-firing")
    assert code == 0, output
    assert output.rstrip().endswith("0 would fire")


def test_without_a_rule_file_check_and_export_use_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no aivitals-alerts.yaml here
    db = str(slow_store(tmp_path / "slow.db"))
    result = runner.invoke(app, ["alerts", "check", "--db", db])
    assert result.exit_code == 0, result.output
    assert "using the default rules" in result.stderr
    assert result.stdout.rstrip().endswith("1 would fire")
    result = runner.invoke(app, ["alerts", "export", "--prometheus"])
    assert result.exit_code == 0, result.output
    exported = yaml.safe_load(result.stdout)["groups"][0]["rules"]
    names = {rule.get("alert") for rule in exported}  # recording rules have none
    assert names >= {"LatencyP95High", "DailyBudgetCritical"}
    assert "using the default rules" in result.stderr
    # A rule file named on the command line must exist: a typo is not the defaults.
    code, output = invoke("alerts", "export", "--prometheus", "--rules", "missing.yaml")
    assert code == 2
    assert "no rule file at missing.yaml" in output


def test_a_broken_rule_file_is_one_line_with_its_line_number(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(default_rules_text().replace("threshold: 5000", "threshold: lots"))
    code, output = invoke("alerts", "export", "--prometheus", "--rules", str(rules))
    line = default_rules_text().splitlines().index("    threshold: 5000") + 1
    assert code == 2
    assert f"{rules}:{line}: rule 'LatencyP95High': threshold" in output.replace("\n", "")


def test_export_writes_a_rule_file_and_lists_what_it_leaves_out(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(
        default_rules_text()
        + "  - {name: Ttft, signal: query, measure: ttft_p95_ms, op: '>', threshold: 900}\n"
    )
    out = tmp_path / "aivitals.rules.yml"
    result = runner.invoke(
        app, ["alerts", "export", "--prometheus", "--rules", str(rules), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    exported = yaml.safe_load(out.read_text())["groups"][0]["rules"]
    # The 12 threshold defaults and ErrorRateAnomaly, with the series it records.
    assert len([rule for rule in exported if "alert" in rule]) == 13
    assert "Ttft" not in {rule.get("alert") for rule in exported}
    assert "not exported: Ttft: signal: query reads the store" in result.stderr


def test_test_sends_a_test_notification_to_the_rules_notifiers(
    tmp_path: Path, receiver: Receiver
) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(
        default_rules_text().replace(
            "notifiers: []",
            f"notifiers:\n  - {{name: hook, type: webhook, url: '{receiver.url}/x'}}",
        )
    )
    code, output = invoke("alerts", "test", "DailyBudgetCritical", "--rules", str(rules))
    assert code == 0, output
    assert "hook: sent" in output
    [received] = receiver.received
    assert received.body["test"] is True
    assert received.body["alert"]["rule"] == "DailyBudgetCritical"
    assert received.body["alert"]["labels"]["severity"] == "critical"
    assert received.body["alert"]["labels"]["test"] == "true"

    receiver.statuses = [500]
    code, output = invoke("alerts", "test", "DailyBudgetCritical", "--rules", str(rules))
    assert code == 1
    assert "hook: failed" in output
    code, output = invoke("alerts", "test", "NoSuchRule", "--rules", str(rules))
    assert code == 2
    assert "no rule 'NoSuchRule'" in output


def last_error(service: AlertService) -> str | None:
    # A function, not the attribute: the type checker would keep the narrowing of an earlier assert.
    return service.last_error


def test_the_service_evaluates_reloads_and_keeps_old_rules_on_a_mistake(tmp_path: Path) -> None:
    now = [datetime(2026, 11, 24, 10, 0, 30, tzinfo=UTC).timestamp()]
    windows = LiveWindows(clock=lambda: now[0])
    memory = MemoryNotifier()
    rules = tmp_path / "alerts.yaml"
    rules.write_text(
        "rules: [{name: AnySpend, signal: spend, window: today, op: '>', threshold: 1}]"
    )
    service = AlertService(
        rules,
        windows=windows,
        notifiers={"m": memory},
        state_path=tmp_path / "state.json",
        clock=lambda: now[0],
    )
    service.start()
    try:
        windows.on_call(
            Call(
                provider="openai",
                model="m",
                latency_ms=10.0,
                cost_usd=Decimal(2),
                started_at=datetime.fromtimestamp(now[0] - 1, UTC),
            )
        )
        service.run_now()
        poll("the firing notification", lambda: memory.sent)
        assert [n.rule for n in memory.sent] == ["AnySpend"]

        rules.write_text("rules: [{name: AnySpend, signal: spend, op: '>', threshold: cheap}]")
        error = service.reload()
        assert error is not None and f"{rules}:1:" in error
        assert service.last_error == error
        assert service.engine is not None
        assert service.engine.rules.rule("AnySpend").threshold == 1

        rules.write_text(
            "rules: [{name: Other, signal: spend, window: today, op: '>', threshold: 5}]"
        )
        service.request_reload()  # as a SIGHUP handler does: the service's thread reloads
        # The rule that fired is gone: its alert resolves and says so.
        poll("the resolve", lambda: [n for n in memory.sent if n.status == "resolved"])
        assert [r.name for r in service.engine.rules.rules] == ["Other"]
        assert last_error(service) is None
    finally:
        service.stop()
    assert (tmp_path / "state.json").exists()
