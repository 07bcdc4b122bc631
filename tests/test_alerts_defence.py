"""Alert silences within bounds, a state file that survives a bad saved silence, and rules that
keep reading when the live windows cannot answer.

``for: 100000000w`` was once a 500 that saved the silence anyway, after which listing silences
was a 500 for good, restarts included; ``for: 0s`` was accepted. The limits are written here as
figures (docs/alerts.md): at least a minute, at most 366 days.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec.structs
import pytest
from fastapi.testclient import TestClient

from aivitals.alerts import AlertEngine, AlertService, parse_rules
from aivitals.alerts.rules import default_rules_text
from aivitals.query import Queries
from aivitals.server import create_app
from aivitals.store.sql import SqlStore
from aivitals.windows import LiveWindows
from tests.support.helpers import make_call
from tests.support.server_app import served_at

RULES = """
rules:
  - {name: ErrorsAbove, signal: error_rate, window: 15m, op: ">", threshold: 0.5}
"""
DAY_S = 86400


@contextmanager
def silences_app(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """The server with an alert engine, its state in ``tmp_path / "state.json"``."""
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES)
    state = tmp_path / "state.json"
    with served_at(tmp_path / "a.db") as served:
        assert served.store is not None
        service = AlertService(rules, queries=Queries(served.store.engine), state_path=state)
        service.start()
        try:
            app = create_app(runtime=served.runtime, store=served.store, alerts=service)
            yield TestClient(app), state
        finally:
            service.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    with silences_app(tmp_path) as served:
        yield served


def post(client: TestClient, duration: str) -> Any:
    return client.post(
        "/api/v1/alerts/silences", json={"matchers": {"alertname": "ErrorsAbove"}, "for": duration}
    )


@pytest.mark.parametrize(
    "duration", ["100000000w", "9" * 5000 + "w", "367d", "53w", "0s", "59s", "0m"]
)
def test_a_silence_too_long_or_too_short_is_a_422_naming_for_and_is_not_kept(
    served: tuple[TestClient, Path], duration: str
) -> None:
    client, state = served
    reply = post(client, duration)
    assert reply.status_code == 422, reply.text
    assert [f["field"] for f in reply.json()["fields"]] == ["for"]
    assert len(reply.text) < 1000  # the message quotes the value, not 5,000 digits of it
    listed = client.get("/api/v1/alerts/silences")
    assert listed.status_code == 200 and listed.json()["silences"] == []
    saved = json.loads(state.read_text()) if state.exists() else {"silences": []}
    assert saved["silences"] == []


@pytest.mark.parametrize(("duration", "seconds"), [("1m", 60), ("60s", 60), ("366d", 366 * DAY_S)])
def test_a_silence_from_a_minute_to_a_year_is_kept(
    served: tuple[TestClient, Path], duration: str, seconds: int
) -> None:
    client, _ = served
    reply = post(client, duration)
    assert reply.status_code == 201, reply.text
    made = reply.json()
    length = datetime.fromisoformat(made["ends_at"]) - datetime.fromisoformat(made["starts_at"])
    assert abs(length - timedelta(seconds=seconds)) < timedelta(milliseconds=1)
    assert [s["id"] for s in client.get("/api/v1/alerts/silences").json()["silences"]] == [
        made["id"]
    ]


def test_a_bad_silence_already_saved_is_left_out_and_logged_and_the_rest_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC).timestamp()
    good = {"id": "1", "matchers": {"alertname": "ErrorsAbove"}, "starts_at": now,
            "ends_at": now + 3600, "comment": "known"}  # fmt: skip
    # What an older version saved for `for: 100000000w`, and worse.
    bad = [
        {**good, "id": "2", "ends_at": now + 100_000_000 * 7 * DAY_S},
        {**good, "id": "3", "ends_at": float("inf")},
        {**good, "id": "4", "ends_at": "tomorrow"},
        {"id": "5", "matchers": {"alertname": "ErrorsAbove"}},
    ]
    state = {"version": 1, "alerts": [], "silences": [good, *bad], "outbox": [], "given_up": [],
             "counters": {}, "next_id": 6}  # fmt: skip
    (tmp_path / "state.json").write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING, logger="aivitals.alerts"):
        for _ in range(2):  # and again after a restart
            with silences_app(tmp_path) as (client, _path):
                listed = client.get("/api/v1/alerts/silences")
                assert listed.status_code == 200, listed.text
                assert [s["id"] for s in listed.json()["silences"]] == ["1"]
    assert sum("left out a saved silence" in r.getMessage() for r in caplog.records) >= 4


def test_rules_read_the_store_when_the_live_windows_cannot_place_a_call(tmp_path: Path) -> None:
    # latency_ms 1e16 ends in year 318,857: the live windows' daily views could not be read,
    # so the daily spend and token rules failed on every evaluation.
    now = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    windows = LiveWindows(minutes=60, clock=now.timestamp)
    store = SqlStore.open(tmp_path / "a.db")
    good = make_call(started_at=now - timedelta(minutes=5), cost_usd=Decimal("0.25"))
    store.write([good], [])
    windows.on_call(good)
    older = make_call(started_at=now - timedelta(minutes=4))
    msgspec.structs.force_setattr(older, "latency_ms", 1e16)  # as an older version accepted it
    windows.on_call(older)
    engine = AlertEngine(
        parse_rules(default_rules_text()),
        windows=windows,
        queries=Queries(store.engine),
        notifiers={},
        clock=now.timestamp,
    )
    findings = {finding.rule.name: finding for finding in engine.check()}
    assert engine.rule_errors == {}
    daily = [
        r for r in engine.rules.rules if r.window == "today" and r.signal in ("spend", "tokens")
    ]
    assert daily
    for rule in daily:
        assert findings[rule.name].source == "store"
        assert findings[rule.name].value == (0.25 if rule.signal == "spend" else 1100)
    store.close()
