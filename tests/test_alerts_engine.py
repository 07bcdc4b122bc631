"""The alert engine over live windows, with an injected clock: every default rule's lifecycle,
silences, restarts, repeats and delivery retries.

Each default rule is loaded alone from the shipped defaults and fed calls (or scores) that breach
it, one batch per simulated minute; the expectations (its `for`, its severity, its group labels)
are written here from docs/alerts.md and DESIGN.md, not read from the rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from aivitals.alerts import (
    AlertEngine,
    DeliveryError,
    MemoryNotifier,
    Notification,
    RetryPolicy,
    RuleSet,
    default_rules_text,
    parse_rules,
)
from aivitals.model import Call, Score
from aivitals.windows import LiveWindows

START = datetime(2026, 11, 24, 10, 0, 30, tzinfo=UTC).timestamp()


class Clock:
    """Epoch seconds that only move when the test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def call(clock: Clock, **fields: object) -> Call:
    latency = float(fields.pop("latency_ms", 200.0))  # type: ignore[arg-type]
    # Ends one second before "now": inside the current minute of the live windows.
    started = datetime.fromtimestamp(clock() - latency / 1000 - 1, UTC)
    values: dict[str, object] = {"provider": "openai", "model": "m", "latency_ms": latency}
    values.update(fields)
    return Call(started_at=started, **values)  # type: ignore[arg-type]


Feed = Callable[[LiveWindows, Clock], None]


def spend(usd: str) -> Feed:
    def feed(windows: LiveWindows, clock: Clock) -> None:
        windows.on_call(call(clock, cost_usd=Decimal(usd)))

    return feed


def slow(latency_ms: float) -> Feed:
    def feed(windows: LiveWindows, clock: Clock) -> None:
        for _ in range(20):
            windows.on_call(call(clock, latency_ms=latency_ms, cost_usd=Decimal("0.001")))

    return feed


def scores(value: float) -> Feed:
    def feed(windows: LiveWindows, clock: Clock) -> None:
        created = datetime.fromtimestamp(clock() - 1, UTC)
        for i in range(3):
            windows.on_score(
                Score(
                    call_id=f"c{i}", name="helpfulness", value=value, created_at=created, model="m"
                )
            )

    return feed


def verdicts(name: str, found: int, of: int) -> Feed:
    """An evaluator's verdicts: ``found`` answers of ``of`` scored 1 (the rest 0)."""

    def feed(windows: LiveWindows, clock: Clock) -> None:
        created = datetime.fromtimestamp(clock() - 1, UTC)
        for i in range(of):
            windows.on_call(call(clock, feature="search"))  # the groups come from the calls
            windows.on_score(
                Score(
                    call_id=f"c{i}",
                    name=name,
                    value=1.0 if i < found else 0.0,
                    source="evaluator",
                    created_at=created,
                    model="m",
                    feature="search",
                )
            )

    return feed


def tokens(windows: LiveWindows, clock: Clock) -> None:
    windows.on_call(call(clock, input_tokens=700_000, output_tokens=400_000))


def errors(windows: LiveWindows, clock: Clock) -> None:
    for _ in range(8):
        windows.on_call(call(clock))
    for _ in range(2):
        windows.on_call(call(clock, status="error", error_type="rate_limit"))


def cache_misses(windows: LiveWindows, clock: Clock) -> None:
    windows.on_call(call(clock, cache="hit"))
    for _ in range(9):
        windows.on_call(call(clock, cache="miss"))
    for _ in range(20):
        windows.on_call(call(clock, cache="bypass"))


@dataclass(frozen=True)
class Case:
    severity: str
    for_s: float
    window_s: float
    group: dict[str, str]
    feed: Feed


# From DESIGN.md's default table and docs/alerts.md: severities, `for`, windows and groups.
CASES = {
    "DailyBudgetWarning": Case("warning", 60, 86400, {}, spend("60")),
    "DailyBudgetCritical": Case("critical", 60, 86400, {}, spend("120")),
    "CostPerRequestSpike": Case("warning", 300, 900, {"model": "m"}, spend("0.5")),
    "LatencyP95High": Case("warning", 300, 300, {"model": "m"}, slow(6000)),
    "LatencyP99High": Case("critical", 300, 300, {"model": "m"}, slow(12000)),
    "QualityDegraded": Case("warning", 900, 3600, {"score": "helpfulness"}, scores(0.6)),
    "QualityCriticalDrop": Case("critical", 900, 3600, {"score": "helpfulness"}, scores(0.3)),
    "RefusalRateHigh": Case("warning", 900, 3600, {"model": "m"}, verdicts("refusal", 1, 10)),
    "PiiLeak": Case(
        "critical", 60, 3600, {"model": "m", "feature": "search"}, verdicts("pii_leak", 1, 50)
    ),
    "HighTokenUsage": Case("warning", 60, 86400, {}, tokens),
    "ErrorRateHigh": Case("warning", 300, 300, {"error_type": "rate_limit"}, errors),
    "CacheHitRatioLow": Case("warning", 1800, 3600, {}, cache_misses),
}


def only(name: str, text: str | None = None) -> RuleSet:
    rules = parse_rules(text or default_rules_text())
    return rules.model_copy(update={"rules": (rules.rule(name),)})


def engine_for(
    rules: RuleSet,
    clock: Clock,
    windows: LiveWindows,
    notifier: MemoryNotifier,
    state: Path | None = None,
    **options: object,
) -> AlertEngine:
    return AlertEngine(
        rules,
        windows=windows,
        notifiers={"memory": notifier},
        state_path=state,
        clock=clock,
        **options,  # type: ignore[arg-type]
    )


def phases(engine: AlertEngine) -> list[str]:
    return [alert.phase for alert in engine.alerts()]


def test_the_defaults_are_the_design_table() -> None:
    rules = parse_rules(default_rules_text())
    # The kinds that read the store's history are tested in tests/test_alerts_kinds.py.
    assert sorted(r.name for r in rules.rules if r.kind == "threshold") == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_default_rule_goes_pending_fires_once_and_resolves_once(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    clock = Clock()
    windows = LiveWindows(clock=clock)
    memory = MemoryNotifier()
    engine = engine_for(only(name), clock, windows, memory, tmp_path / "state.json")
    expected_labels = {"alertname": name, "severity": case.severity, **case.group}

    case.feed(windows, clock)
    engine.run_once()
    assert phases(engine) == ["pending"]
    assert memory.sent == []
    first = clock()

    # Keep breaching, a minute at a time, until `for` has passed.
    while clock() - first < case.for_s:
        clock.advance(60)
        case.feed(windows, clock)
        engine.run_once()
        if clock() - first < case.for_s:
            assert phases(engine) == ["pending"], clock() - first
    assert phases(engine) == ["firing"]
    assert len(memory.sent) == 1
    fired = memory.sent[0]
    assert (fired.status, fired.labels, fired.severity) == (
        "firing",
        expected_labels,
        case.severity,
    )
    assert fired.starts_at == clock()

    for _ in range(3):  # still breaching: no storm
        clock.advance(60)
        case.feed(windows, clock)
        engine.run_once()
    assert len(memory.sent) == 1

    # Nothing more comes in: once the window has passed, the alert resolves, and says so once.
    clock.advance(case.window_s + 60)
    engine.run_once()
    assert phases(engine) == ["resolved"]
    assert [n.status for n in memory.sent] == ["firing", "resolved"]
    resolved = memory.sent[1]
    assert resolved.labels == expected_labels
    assert resolved.fingerprint == fired.fingerprint
    assert resolved.ends_at == clock()
    for _ in range(3):
        clock.advance(60)
        engine.run_once()
    assert len(memory.sent) == 2


def breach_until_firing(engine: AlertEngine, windows: LiveWindows, clock: Clock) -> None:
    case = CASES["LatencyP95High"]
    for _ in range(int(case.for_s // 60) + 1):
        case.feed(windows, clock)
        engine.run_once()
        clock.advance(60)
    case.feed(windows, clock)
    engine.run_once()


def test_a_silence_holds_notifications_back_until_it_ends() -> None:
    clock = Clock()
    windows = LiveWindows(clock=clock)
    memory = MemoryNotifier()
    engine = engine_for(only("LatencyP95High"), clock, windows, memory)
    engine.silence({"alertname": "LatencyP95High", "model": "m"}, ends_at=clock() + 600)
    breach_until_firing(engine, windows, clock)
    assert phases(engine) == ["firing"]
    assert memory.sent == []

    while clock() < START + 600:
        clock.advance(60)
        CASES["LatencyP95High"].feed(windows, clock)
        engine.run_once()
    # The silence has ended and the alert still fires: now it is told, once.
    assert [n.status for n in memory.sent] == ["firing"]


def test_an_alert_that_fires_and_resolves_under_a_silence_says_nothing() -> None:
    clock = Clock()
    windows = LiveWindows(clock=clock)
    memory = MemoryNotifier()
    engine = engine_for(only("LatencyP95High"), clock, windows, memory)
    engine.silence({"severity": "warning"}, ends_at=clock() + 3600)
    breach_until_firing(engine, windows, clock)
    clock.advance(600)
    engine.run_once()
    assert phases(engine) == ["resolved"]
    assert memory.sent == []


def test_a_silence_that_does_not_match_holds_nothing_back() -> None:
    clock = Clock()
    windows = LiveWindows(clock=clock)
    memory = MemoryNotifier()
    engine = engine_for(only("LatencyP95High"), clock, windows, memory)
    engine.silence({"model": "another"}, ends_at=clock() + 3600)
    breach_until_firing(engine, windows, clock)
    assert [n.status for n in memory.sent] == ["firing"]


def test_a_restart_keeps_pending_firing_and_silences(tmp_path: Path) -> None:
    state = tmp_path / "alerts.json"
    clock = Clock()
    windows = LiveWindows(clock=clock)
    memory = MemoryNotifier()
    rules = only("LatencyP95High")
    feed = CASES["LatencyP95High"].feed

    engine = engine_for(rules, clock, windows, memory, state)
    feed(windows, clock)
    engine.run_once()
    assert phases(engine) == ["pending"]
    silence = engine.silence({"model": "elsewhere"}, ends_at=clock() + 7200, comment="kept")

    # A new process: the pending alert keeps its start, so it fires 5 minutes after the first
    # breach, not 5 minutes after the restart.
    engine = engine_for(rules, clock, windows, memory, state)
    assert phases(engine) == ["pending"]
    assert [s.comment for s in engine.state.silences] == ["kept"]
    assert engine.state.silences[0].id == silence.id
    for _ in range(5):
        clock.advance(60)
        feed(windows, clock)
        engine.run_once()
    assert phases(engine) == ["firing"]
    assert [n.status for n in memory.sent] == ["firing"]

    # Again: the firing alert was already notified; the restart must not notify it twice.
    engine = engine_for(rules, clock, windows, memory, state)
    clock.advance(60)
    feed(windows, clock)
    engine.run_once()
    assert phases(engine) == ["firing"]
    assert len(memory.sent) == 1

    clock.advance(400)
    engine = engine_for(rules, clock, windows, memory, state)
    engine.run_once()
    assert [n.status for n in memory.sent] == ["firing", "resolved"]


def test_a_long_firing_alert_is_notified_again_at_the_repeat_interval() -> None:
    text = default_rules_text().replace("repeat_interval: 4h", "repeat_interval: 10m")
    clock = Clock()
    windows = LiveWindows(clock=clock)
    memory = MemoryNotifier()
    engine = engine_for(only("LatencyP95High", text), clock, windows, memory)
    breach_until_firing(engine, windows, clock)
    fired_at = clock()
    while clock() < fired_at + 25 * 60:
        clock.advance(60)
        CASES["LatencyP95High"].feed(windows, clock)
        engine.run_once()
    assert [(n.status, n.repeat) for n in memory.sent] == [
        ("firing", False),
        ("firing", True),
        ("firing", True),
    ]
    assert memory.sent[1].fingerprint == memory.sent[0].fingerprint


class Flaky:
    """Fails the first ``failures`` sends, then keeps what it gets."""

    refresh_s: float | None = None

    def __init__(self, failures: int) -> None:
        self.name = "flaky"
        self.failures = failures
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise DeliveryError("receiver answered 503")
        self.sent.append(notification)


def test_a_failed_delivery_is_retried_with_back_off_and_shown_meanwhile() -> None:
    clock = Clock()
    windows = LiveWindows(clock=clock)
    flaky = Flaky(failures=2)
    engine = AlertEngine(
        only("DailyBudgetWarning"),
        windows=windows,
        notifiers={"flaky": flaky},
        clock=clock,
        retry=RetryPolicy(first_s=10, max_s=100, max_attempts=5),
    )
    spend("60")(windows, clock)
    engine.run_once()
    clock.advance(60)
    engine.run_once()  # fires; the first attempt fails
    assert phases(engine) == ["firing"]
    status = engine.status()
    assert status.queued == 1
    assert status.counters == {"failed_attempts": 1}
    assert engine.state.outbox[0].last_error == "receiver answered 503"

    clock.advance(9)  # the back-off (10 s) has not passed: no attempt
    engine.deliver()
    assert engine.status().counters == {"failed_attempts": 1}
    clock.advance(1)
    engine.deliver()  # second failure; next back-off is 20 s
    assert engine.status().counters == {"failed_attempts": 2}
    clock.advance(19)
    engine.deliver()
    assert flaky.sent == []
    clock.advance(1)
    engine.deliver()
    assert [n.status for n in flaky.sent] == ["firing"]
    assert engine.status().counters == {"failed_attempts": 2, "sent": 1}
    assert engine.status().queued == 0


def test_deliveries_that_never_get_through_are_kept_as_given_up() -> None:
    clock = Clock()
    windows = LiveWindows(clock=clock)
    flaky = Flaky(failures=1_000)
    engine = AlertEngine(
        only("DailyBudgetWarning"),
        windows=windows,
        notifiers={"flaky": flaky},
        clock=clock,
        retry=RetryPolicy(first_s=1, max_s=1, max_attempts=3),
    )
    spend("60")(windows, clock)
    engine.run_once()
    clock.advance(60)
    for _ in range(5):
        engine.run_once()
        clock.advance(1)
    status = engine.status()
    assert status.queued == 0
    assert status.counters == {"failed_attempts": 3, "given_up": 1}
    assert [d.notification.status for d in status.given_up] == ["firing"]
    assert status.given_up[0].attempts == 3


def test_a_resolve_waits_behind_its_own_failing_firing() -> None:
    clock = Clock()
    windows = LiveWindows(clock=clock)
    flaky = Flaky(failures=3)
    engine = AlertEngine(
        only("LatencyP95High"),
        windows=windows,
        notifiers={"flaky": flaky},
        clock=clock,
        retry=RetryPolicy(first_s=1000, max_s=1000, max_attempts=10),
    )
    breach_until_firing(engine, windows, clock)
    clock.advance(600)
    engine.run_once()  # resolved, but the firing has not gone out yet
    assert engine.status().queued == 2
    for _ in range(4):
        clock.advance(1000)
        engine.deliver()
    assert [n.status for n in flaky.sent] == ["firing", "resolved"]


def test_removing_a_rule_resolves_its_firing_alerts() -> None:
    clock = Clock()
    windows = LiveWindows(clock=clock)
    memory = MemoryNotifier()
    engine = engine_for(only("LatencyP95High"), clock, windows, memory)
    breach_until_firing(engine, windows, clock)
    engine.replace_rules(only("DailyBudgetWarning"))
    engine.deliver()
    assert [n.status for n in memory.sent] == ["firing", "resolved"]
    assert engine.alerts() == []


def test_a_rule_that_cannot_be_read_keeps_its_alerts_and_says_why() -> None:
    clock = Clock()
    windows = LiveWindows(clock=clock)
    memory = MemoryNotifier()
    text = default_rules_text().replace(
        'window: 5m\n    op: ">"\n    threshold: 5000',
        'window: 3h\n    op: ">"\n    threshold: 5000',
    )
    engine = engine_for(only("LatencyP95High", text), clock, windows, memory)
    engine.run_once()  # 3 h is beyond the live windows and there is no store
    assert "needs the store" in engine.status().rule_errors["LatencyP95High"]


class Refreshing(MemoryNotifier):
    """Like Alertmanager: wants firing alerts re-sent every minute."""

    refresh_s: float | None = 60.0


def test_notifiers_that_forget_get_firing_alerts_re_sent_and_others_do_not() -> None:
    clock = Clock()
    windows = LiveWindows(clock=clock)
    keeper = MemoryNotifier("keeper")
    forgetful = Refreshing("forgetful")
    engine = AlertEngine(
        only("LatencyP95High"),
        windows=windows,
        notifiers={"keeper": keeper, "forgetful": forgetful},
        clock=clock,
    )
    breach_until_firing(engine, windows, clock)
    for _ in range(3):
        clock.advance(60)
        CASES["LatencyP95High"].feed(windows, clock)
        engine.run_once()
    minutes_firing = int((clock() - forgetful.sent[0].starts_at) // 60)
    assert minutes_firing >= 3
    assert [n.repeat for n in keeper.sent] == [False]
    assert [n.repeat for n in forgetful.sent] == [False] + [True] * minutes_firing
