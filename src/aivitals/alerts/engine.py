"""`AlertEngine`: rules evaluated into alert states, and notifications delivered with retries.

Each rule and group moves through four phases::

    inactive --breach--> pending --breach for `for`--> firing --no breach--> resolved
        ^                   |                                                   |
        +----no breach------+                 (breach again: pending) <---------+

A notification is queued once when an alert fires and once when it resolves (only if its
firing went out), again every ``repeat_interval`` while it keeps firing, and never while a
silence matches it (if it is still firing when the silence ends, it goes out then). Each
notifier has its own queue entry; a failed delivery is retried with exponential back-off and
counted, and after ``max_attempts`` it is kept in ``given_up`` for a person to see.

The engine never reads the wall clock: ``clock`` (epoch seconds) is injected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aivitals.alerts.kinds import Details, read_kind
from aivitals.alerts.notifiers.base import DeliveryError, Notification, Notifier, Status
from aivitals.alerts.notifiers.build import build_notifiers
from aivitals.alerts.rules import Rule, RuleSet, parse_duration, render
from aivitals.alerts.signals import Labels, Readings, live_fits, read_live, read_store
from aivitals.alerts.state import (
    AlertState,
    Delivery,
    EngineState,
    Phase,
    Silence,
    StateFile,
    fingerprint,
    silence_problem,
)
from aivitals.query import Queries
from aivitals.retry import RetryPolicy
from aivitals.windows import LiveWindows

if TYPE_CHECKING:
    from aivitals.gateway.budgets import Budget

logger = logging.getLogger("aivitals.alerts")

RESOLVED_KEPT_S = 24 * 3600.0
"""How long a resolved alert stays listed before it is forgotten."""
GIVEN_UP_KEPT = 100


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert that changed phase in an evaluation."""

    rule: str
    labels: dict[str, str]
    old: Phase
    new: Phase
    value: float | None


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule and group as `AlertEngine.check` sees it: its value and whether it breaches."""

    rule: Rule
    labels: dict[str, str]
    value: float | None
    breached: bool
    source: str


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """Delivery counters, the queue, given-up deliveries and rules that could not be read."""

    counters: dict[str, int]
    queued: int
    given_up: list[Delivery]
    rule_errors: dict[str, str]


class AlertEngine:
    """Evaluates ``rules`` from live ``windows`` and/or the store's ``queries``; notifies.

    ``notifiers`` defaults to the rule file's; ``state_path`` None keeps the state in memory.
    ``budgets`` are the gateway's, for ``forecast`` and ``burn_rate`` rules with
    ``budget: gateway``. Thread-safe: `run_once`, `silence` and `replace_rules` may come from different threads.
    """

    def __init__(
        self,
        rules: RuleSet,
        *,
        windows: LiveWindows | None = None,
        queries: Queries | None = None,
        notifiers: Mapping[str, Notifier] | None = None,
        state_path: str | Path | None = None,
        clock: Callable[[], float] = time.time,
        live_minutes: int = 60,
        retry: RetryPolicy | None = None,
        environ: Mapping[str, str] | None = None,
        budgets: Sequence[Budget] = (),
    ) -> None:
        self._clock = clock
        self._budgets = tuple(budgets)
        self._details: dict[str, Details] = {}
        self._windows = windows
        self._queries = queries
        self._live_minutes = live_minutes
        self._retry = retry or RetryPolicy()
        self._environ = environ
        self._fixed_notifiers = notifiers
        self._lock = threading.RLock()
        self._file = StateFile(state_path)
        self.state: EngineState = self._file.load()
        self.rule_errors: dict[str, str] = {}
        self.rules = rules
        self.notifiers: dict[str, Notifier] = self._notifiers_for(rules)

    def _notifiers_for(self, rules: RuleSet) -> dict[str, Notifier]:
        if self._fixed_notifiers is not None:
            return dict(self._fixed_notifiers)
        return build_notifiers(rules.notifiers, environ=self._environ, clock=self._clock)

    def replace_rules(self, rules: RuleSet) -> None:
        """Use ``rules`` from now on; alerts of rules that are gone resolve (and notify)."""
        notifiers = self._notifiers_for(rules)
        with self._lock:
            self.rules = rules
            self.notifiers = notifiers
            names = {rule.name for rule in rules.rules if rule.enabled}
            now = self._clock()
            for alert in list(self.state.alerts.values()):
                if alert.rule not in names:
                    if alert.phase == "firing":
                        self._resolve(alert, None, now, rule=None)
                    del self.state.alerts[alert.fingerprint]
            self.rule_errors = {k: v for k, v in self.rule_errors.items() if k in names}
            self._file.save(self.state)

    def run_once(self) -> list[Transition]:
        """Evaluate every rule, deliver what is due, save the state."""
        with self._lock:
            transitions = self.evaluate()
            self.deliver()
            self._file.save(self.state)
            return transitions

    def read(self, rule: Rule) -> tuple[Readings, str]:
        """The rule's value per group now, and the source that answered (``live``/``store``).

        With a store, ``source: auto`` reads it: the live windows begin empty at every start
        and never see the calls other processes write into the same store, so they cannot
        be known to hold a whole rule window (after a restart the day's spend would count
        from $0). Without a store they are all there is.
        """
        if rule.kind != "threshold":
            if self._queries is None:
                raise ValueError(f"kind: {rule.kind} reads the store's history, and there is none")
            now = datetime.fromtimestamp(self._clock(), UTC)
            readings, details = read_kind(
                rule, self._queries, now, ZoneInfo(self.rules.timezone), self._budgets
            )
            self._details[rule.name] = details
            return readings, "store"
        if rule.source == "live" or (rule.source == "auto" and self._queries is None):
            if self._windows is not None and live_fits(rule, self._live_minutes):
                return read_live(rule, self._windows), "live"
            if rule.source == "live":
                raise ValueError(
                    f"the live windows cannot answer this rule (its window, filters or groups); "
                    f"they keep {self._live_minutes} minutes by provider, model, feature and team"
                )
        if self._queries is None:
            raise ValueError("this rule needs the store, and there is none")
        now = datetime.fromtimestamp(self._clock(), UTC)
        return read_store(rule, self._queries, now, ZoneInfo(self.rules.timezone)), "store"

    def check(self) -> list[Finding]:
        """Every enabled rule's groups with their values now, without changing any state.

        A rule that cannot be read is in `rule_errors` afterwards.
        """
        findings: list[Finding] = []
        with self._lock:
            for rule in self.rules.rules:
                if not rule.enabled:
                    continue
                try:
                    readings, source = self.read(rule)
                except Exception as exc:
                    self.rule_errors[rule.name] = str(exc)
                    continue
                self.rule_errors.pop(rule.name, None)
                for group, value in readings.items():
                    labels = self._labels(rule, group)
                    findings.append(Finding(rule, labels, value, rule.breached(value), source))
        return findings

    def evaluate(self) -> list[Transition]:
        """Read every rule and move each alert along its phases, queueing notifications."""
        transitions: list[Transition] = []
        with self._lock:
            now = self._clock()
            self.state.silences = [s for s in self.state.silences if s.ends_at > now]
            for rule in self.rules.rules:
                if not rule.enabled:
                    continue
                try:
                    readings, _ = self.read(rule)
                except Exception as exc:
                    # Leave the rule's alerts as they are: a store outage is not a resolve.
                    logger.warning("alert rule %s cannot be read: %s", rule.name, exc)
                    self.rule_errors[rule.name] = str(exc)
                    continue
                self.rule_errors.pop(rule.name, None)
                transitions.extend(self._step(rule, readings, now))
        return transitions

    def _labels(self, rule: Rule, group: Labels) -> dict[str, str]:
        return {**rule.labels, **dict(group), "alertname": rule.name, "severity": rule.severity}

    def _step(self, rule: Rule, readings: Readings, now: float) -> list[Transition]:
        seen: set[str] = set()
        changes: list[Transition] = []
        for group, value in readings.items():
            labels = self._labels(rule, group)
            key = fingerprint(labels)
            seen.add(key)
            alert = self.state.alerts.get(key)
            if alert is None:
                alert = AlertState(rule=rule.name, labels=labels, fingerprint=key)
            old = alert.phase
            self._advance(rule, alert, value, now, self._details.get(rule.name, {}).get(group))
            self.state.alerts[key] = alert
            self._forget(alert, now)
            if alert.phase != old:
                changes.append(Transition(rule.name, labels, old, alert.phase, value))
        # Groups that no longer appear (no calls at all in the window) do not breach.
        for alert in [a for a in self.state.alerts.values() if a.rule == rule.name]:
            if alert.fingerprint in seen:
                continue
            old = alert.phase
            self._advance(rule, alert, None, now)
            self._forget(alert, now)
            if alert.phase != old:
                changes.append(Transition(rule.name, alert.labels, old, alert.phase, None))
        return changes

    def _forget(self, alert: AlertState, now: float) -> None:
        if alert.phase == "inactive" or (
            alert.phase == "resolved" and now - (alert.resolved_at or now) >= RESOLVED_KEPT_S
        ):
            self.state.alerts.pop(alert.fingerprint, None)

    def _advance(
        self,
        rule: Rule,
        alert: AlertState,
        value: float | None,
        now: float,
        figures: Mapping[str, object] | None = None,
    ) -> None:
        breach = rule.breached(value)
        if breach:
            alert.value = value
            alert.summary = self._summary(rule, alert.labels, value, figures)
        if alert.phase in ("inactive", "resolved"):
            if breach:
                alert.phase = "pending"
                alert.pending_since = now
                alert.fired_at = alert.resolved_at = None
                alert.notified = False
                if rule.for_s <= 0:
                    self._fire(rule, alert, now)
        elif alert.phase == "pending":
            if not breach:
                alert.phase = "inactive"
            elif now - (alert.pending_since or now) >= rule.for_s:
                self._fire(rule, alert, now)
        elif alert.phase == "firing":
            if not breach:
                self._resolve(alert, value, now, rule=rule)
            elif not self._silenced(alert.labels, now):
                repeat = parse_duration(rule.repeat_interval or self.rules.repeat_interval)
                if not alert.notified:
                    self._notify(rule, alert, "firing", now)
                elif now - (alert.notified_at or now) >= repeat:
                    self._notify(rule, alert, "firing", now, repeat=True)
                else:
                    self._refresh(rule, alert, now)

    def _fire(self, rule: Rule, alert: AlertState, now: float) -> None:
        alert.phase = "firing"
        alert.fired_at = now
        if not self._silenced(alert.labels, now):
            self._notify(rule, alert, "firing", now)

    def _resolve(
        self, alert: AlertState, value: float | None, now: float, *, rule: Rule | None
    ) -> None:
        alert.phase = "resolved"
        alert.resolved_at = now
        if value is not None:
            alert.value = value
        if alert.notified:
            # The resolve goes out even under a silence: whoever saw it fire should see it end.
            self._queue(self._notification(rule, alert, "resolved"), rule, now)
        alert.notified = False

    def _silenced(self, labels: dict[str, str], now: float) -> bool:
        return any(s.active(now) and s.matches(labels) for s in self.state.silences)

    def _summary(
        self,
        rule: Rule,
        labels: dict[str, str],
        value: float | None,
        figures: Mapping[str, object] | None = None,
    ) -> str:
        # A kind's figures (baseline, projected, ...); None reads as NaN so a format spec holds.
        extra = {k: float("nan") if v is None else v for k, v in (figures or {}).items()}
        values = {
            **extra,
            **labels,
            "value": value if value is not None else float("nan"),
            "threshold": rule.threshold,
            "op": rule.op,
            "window": rule.window,
        }
        return render(rule.summary, values)

    def _notification(
        self, rule: Rule | None, alert: AlertState, status: Status, *, repeat: bool = False
    ) -> Notification:
        return Notification(
            status=status,
            rule=alert.rule,
            severity=alert.labels.get("severity", ""),
            labels=dict(alert.labels),
            summary=alert.summary,
            value=alert.value,
            threshold=rule.threshold if rule is not None else float("nan"),
            op=rule.op if rule is not None else "",
            window=rule.window if rule is not None else "",
            fingerprint=alert.fingerprint,
            starts_at=alert.fired_at if alert.fired_at is not None else self._clock(),
            ends_at=alert.resolved_at if status == "resolved" else None,
            repeat=repeat,
        )

    def _notify(
        self, rule: Rule, alert: AlertState, status: Status, now: float, *, repeat: bool = False
    ) -> None:
        self._queue(self._notification(rule, alert, status, repeat=repeat), rule, now)
        alert.notified = True
        alert.notified_at = now
        alert.refreshed_at = now

    def _refresh(self, rule: Rule, alert: AlertState, now: float) -> None:
        since = now - (alert.refreshed_at or now)
        due = [
            name
            for name in self._targets(rule)
            if (every := self.notifiers[name].refresh_s) is not None and since >= every
        ]
        if due:
            notification = self._notification(rule, alert, "firing", repeat=True)
            for name in due:
                self._enqueue(name, notification, now)
            alert.refreshed_at = now

    def _targets(self, rule: Rule | None) -> list[str]:
        if rule is None or rule.notify is None:
            return list(self.notifiers)
        return [name for name in rule.notify if name in self.notifiers]

    def _queue(self, notification: Notification, rule: Rule | None, now: float) -> None:
        for name in self._targets(rule):
            self._enqueue(name, notification, now)

    def _enqueue(self, name: str, notification: Notification, now: float) -> None:
        self.state.outbox.append(
            Delivery(
                id=self.state.new_id(),
                notifier=name,
                notification=notification,
                queued_at=now,
                next_at=now,
            )
        )

    def deliver(self) -> None:
        """Send the queued notifications that are due, in order per notifier and alert."""
        with self._lock:
            now = self._clock()
            blocked: set[tuple[str, str]] = set()
            kept: list[Delivery] = []
            for delivery in self.state.outbox:
                key = (delivery.notifier, delivery.notification.fingerprint)
                notifier = self.notifiers.get(delivery.notifier)
                if key in blocked or delivery.next_at > now:
                    blocked.add(key)
                    kept.append(delivery)
                    continue
                if notifier is None:
                    delivery.last_error = f"no notifier {delivery.notifier!r} in the rule file"
                    self._give_up(delivery)
                    continue
                try:
                    notifier.send(delivery.notification)
                # Any exception: a notifier's own bug must cost a retry, not the engine's thread.
                except Exception as exc:
                    delivery.attempts += 1
                    delivery.last_error = str(exc)
                    self.state.count("failed_attempts")
                    logger.warning(
                        "alert notification to %s failed (attempt %d): %s",
                        delivery.notifier,
                        delivery.attempts,
                        exc,
                    )
                    if self._retry.gave_up(delivery.attempts):
                        self._give_up(delivery)
                        continue
                    asked = exc.retry_after_s if isinstance(exc, DeliveryError) else None
                    delivery.next_at = now + self._retry.delay(
                        delivery.attempts, retry_after_s=asked
                    )
                    blocked.add(key)
                    kept.append(delivery)
                    continue
                self.state.count("sent")
            self.state.outbox = kept

    def _give_up(self, delivery: Delivery) -> None:
        logger.error(
            "alert notification to %s given up after %d attempts: %s",
            delivery.notifier,
            delivery.attempts,
            delivery.last_error,
        )
        self.state.count("given_up")
        self.state.given_up = [*self.state.given_up, delivery][-GIVEN_UP_KEPT:]

    def silence(
        self,
        matchers: Mapping[str, str],
        *,
        ends_at: float,
        starts_at: float | None = None,
        comment: str = "",
    ) -> Silence:
        """Hold back notifications of alerts whose labels equal ``matchers`` until ``ends_at``.

        Raises ValueError, and keeps nothing, for a silence without matchers or one that would
        last less than `MIN_SILENCE_S` or more than `MAX_SILENCE_S`.
        """
        if not matchers:
            raise ValueError("a silence needs at least one matcher (alertname=..., model=...)")
        with self._lock:
            now = self._clock()
            begins = now if starts_at is None else starts_at
            problem = silence_problem(begins, ends_at)
            if problem is not None:
                raise ValueError(problem)
            silence = Silence(
                id=self.state.new_id(),
                matchers=dict(matchers),
                starts_at=begins,
                ends_at=ends_at,
                comment=comment,
            )
            self.state.silences.append(silence)
            self._file.save(self.state)
            return silence

    def clock(self) -> float:
        """The engine's time now (epoch seconds): silences start and end on it."""
        return self._clock()

    def silences(self) -> list[Silence]:
        """The silences not yet ended, soonest to end first."""
        with self._lock:
            now = self._clock()
            kept = [replace(s, matchers=dict(s.matchers)) for s in self.state.silences]
        return sorted((s for s in kept if s.ends_at > now), key=lambda s: s.ends_at)

    def unsilence(self, silence_id: str) -> bool:
        """End a silence now; False if there is none with that id."""
        with self._lock:
            before = len(self.state.silences)
            self.state.silences = [s for s in self.state.silences if s.id != silence_id]
            self._file.save(self.state)
            return len(self.state.silences) != before

    def alerts(self) -> list[AlertState]:
        """A copy of every alert that is pending, firing or recently resolved."""
        with self._lock:
            return [
                replace(alert, labels=dict(alert.labels)) for alert in self.state.alerts.values()
            ]

    def status(self) -> EngineStatus:
        """Delivery counters, queue length, given-up deliveries and unreadable rules."""
        with self._lock:
            return EngineStatus(
                counters=dict(self.state.counters),
                queued=len(self.state.outbox),
                given_up=list(self.state.given_up),
                rule_errors=dict(self.rule_errors),
            )

    def test_notification(self, rule: Rule) -> Notification:
        """A firing notification for ``rule`` marked as a test, as `aivitals alerts test` sends."""
        now = self._clock()
        labels = self._labels(rule, ())
        return Notification(
            status="firing",
            rule=rule.name,
            severity=rule.severity,
            labels={**labels, "test": "true"},
            summary=f"TEST: {self._summary(rule, labels, rule.threshold)}",
            value=rule.threshold,
            threshold=rule.threshold,
            op=rule.op,
            window=rule.window,
            fingerprint=fingerprint({**labels, "test": "true"}),
            starts_at=now,
            test=True,
        )
