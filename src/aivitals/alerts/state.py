"""What the engine remembers between evaluations and across restarts, kept in one JSON file.

The file (``<store>.alerts.json`` beside a SQLite store by default) holds each alert's state, the
silences, the notifications still to deliver and those given up on, and delivery counters. It is
written whole to a temporary file and renamed over the old one, so a crash leaves either the old
or the new state, never half of one.

A silence lasts from `MIN_SILENCE_S` to `MAX_SILENCE_S`; the engine refuses any other. A saved
silence that is not one (an older version accepted ``for: 100000000w``, which no date can end)
is left out when the file is loaded, and logged, so the rest of the state still loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from aivitals.alerts.notifiers.base import Notification

Phase = Literal["inactive", "pending", "firing", "resolved"]
STATE_VERSION = 1
MIN_SILENCE_S = 60.0
"""The shortest silence: a minute (a silence of 0s would end before it is seen)."""
MAX_SILENCE_S = 366 * 86400.0
"""The longest silence: a year (a leap one). Longer is disabling the rule, which the rule file
says better (``enabled: false``)."""

logger = logging.getLogger("aivitals.alerts")


def fingerprint(labels: dict[str, str]) -> str:
    """A stable id for an alert: a hash of its sorted labels (alertname included)."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(slots=True, kw_only=True)
class AlertState:
    """One rule and group: its phase and the times it changed. Times are epoch seconds."""

    rule: str
    labels: dict[str, str]
    fingerprint: str
    phase: Phase = "inactive"
    value: float | None = None
    pending_since: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    notified: bool = False
    """A firing notification went out for the current firing (so its resolve goes out too)."""
    notified_at: float | None = None
    refreshed_at: float | None = None
    summary: str = ""


@dataclass(slots=True, kw_only=True)
class Silence:
    """Holds back notifications of alerts whose labels equal all of ``matchers``, until ``ends_at``."""

    id: str
    matchers: dict[str, str]
    starts_at: float
    ends_at: float
    comment: str = ""

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(name) == value for name, value in self.matchers.items())


def silence_problem(starts_at: float, ends_at: float) -> str | None:
    """Why a silence from ``starts_at`` to ``ends_at`` (epoch seconds) is refused; None if it is not."""
    if not (math.isfinite(starts_at) and math.isfinite(ends_at)):
        return "its start and end must be finite times"
    length = ends_at - starts_at
    # A millisecond of slack: epoch seconds as floats do not subtract exactly.
    if length < MIN_SILENCE_S - 0.001:
        return f"a silence lasts at least {MIN_SILENCE_S:g}s (1m), got {length:g}s"
    if length > MAX_SILENCE_S + 0.001:
        return (
            f"a silence lasts at most 366d (a year), got {length:g}s; "
            "to stop a rule for good, set enabled: false in the rule file"
        )
    try:
        datetime.fromtimestamp(starts_at, UTC)
        datetime.fromtimestamp(ends_at, UTC)
    except (OverflowError, OSError, ValueError):
        return "its start and end must be dates (years 1 to 9999)"
    return None


@dataclass(slots=True, kw_only=True)
class Delivery:
    """A notification on its way to one notifier, retried with back-off until it gets through."""

    id: str
    notifier: str
    notification: Notification
    queued_at: float
    attempts: int = 0
    next_at: float = 0.0
    last_error: str | None = None


@dataclass(slots=True)
class EngineState:
    """Everything `StateFile` keeps."""

    alerts: dict[str, AlertState] = field(default_factory=dict)
    silences: list[Silence] = field(default_factory=list)
    outbox: list[Delivery] = field(default_factory=list)
    given_up: list[Delivery] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    """``sent``, ``failed_attempts`` and ``given_up``, since the state was created."""
    next_id: int = 1

    def new_id(self) -> str:
        value = self.next_id
        self.next_id += 1
        return str(value)

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by


def _delivery_to_json(delivery: Delivery) -> dict[str, Any]:
    data = asdict(delivery)
    data["notification"] = delivery.notification.to_dict()
    return data


def _delivery_from_json(data: dict[str, Any]) -> Delivery:
    return Delivery(**{**data, "notification": Notification.from_dict(data["notification"])})


def dump_state(state: EngineState) -> dict[str, Any]:
    """The state as JSON-ready data."""
    return {
        "version": STATE_VERSION,
        "alerts": [asdict(alert) for alert in state.alerts.values()],
        "silences": [asdict(silence) for silence in state.silences],
        "outbox": [_delivery_to_json(d) for d in state.outbox],
        "given_up": [_delivery_to_json(d) for d in state.given_up],
        "counters": dict(state.counters),
        "next_id": state.next_id,
    }


def load_state(data: dict[str, Any]) -> EngineState:
    """The state from `dump_state`'s data."""
    if data.get("version") != STATE_VERSION:
        raise ValueError(f"alert state version {data.get('version')!r}, expected {STATE_VERSION}")
    alerts = [AlertState(**item) for item in data.get("alerts", [])]
    return EngineState(
        alerts={alert.fingerprint: alert for alert in alerts},
        silences=_silences(data.get("silences", [])),
        outbox=[_delivery_from_json(item) for item in data.get("outbox", [])],
        given_up=[_delivery_from_json(item) for item in data.get("given_up", [])],
        counters=dict(data.get("counters", {})),
        next_id=int(data.get("next_id", 1)),
    )


def _silences(items: list[Any]) -> list[Silence]:
    """The saved silences that are silences; the others are logged and left out."""
    kept: list[Silence] = []
    for item in items:
        try:
            silence = Silence(**item)
            problem = silence_problem(float(silence.starts_at), float(silence.ends_at))
        except (TypeError, ValueError) as exc:
            problem = str(exc)
        if problem is None and isinstance(silence.matchers, dict) and silence.matchers:
            kept.append(silence)
            continue
        logger.warning(
            "alert state: left out a saved silence that is not one (%s): %s",
            problem or "no matchers",
            json.dumps(item, default=str)[:200],
        )
    return kept


class StateFile:
    """Reads and writes the engine's state at ``path`` (None: keep it in memory only)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None

    def load(self) -> EngineState:
        """The saved state, or a fresh one when there is no file yet."""
        if self.path is None or not self.path.exists():
            return EngineState()
        try:
            data = json.loads(self.path.read_text("utf-8"))
            return load_state(data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise StateFileError(f"cannot read the alert state {self.path}: {exc}") from exc

    def save(self, state: EngineState) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(dump_state(state), indent=1), "utf-8")
        os.replace(temporary, self.path)


class StateFileError(Exception):
    """The saved alert state cannot be read (it is left as it is, for a person to look at)."""


def default_state_path(store: str | None) -> Path:
    """Where the state goes: beside a SQLite store file, else ``./aivitals-alerts.state.json``."""
    if store and "://" not in store:
        target = Path(store)
        return target.with_name(target.name + ".alerts.json")
    return Path("aivitals-alerts.state.json")
