"""Labelled outcomes in: the record, ``aivitals.outcome()``, ``POST /api/v1/outcomes``, the store.

The metrics over them are tests/test_outcomes_metrics.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

import aivitals
from aivitals.bounds import OUTCOME_TEXT_CHARS
from aivitals.model import Call, InvalidRecord, Outcome
from aivitals.recorder import Recorder
from aivitals.sdk.runtime import reset
from aivitals.sinks.http import HttpExporter
from aivitals.sinks.store import StoreSink
from aivitals.store import engine as store_engine
from aivitals.store import schema
from aivitals.store.outcomes import readable_outcome
from aivitals.store.sql import SqlStore

from .support.server_app import Served, call_json, serve_app
from .support.servers import serve_in_thread

CALL_ID = "0192f0c4-0000-7000-8000-000000000001"


def stored_outcomes(store: SqlStore) -> list[Outcome]:
    with store.engine.connect() as connection:
        rows = connection.execute(sqlalchemy.select(schema.outcomes)).all()
    return [outcome for outcome in map(readable_outcome, rows) if outcome is not None]


def test_the_kind_comes_from_the_values() -> None:
    labels = Outcome.of(CALL_ID, predicted="spam", actual="ham", probability=0.9)
    assert (labels.kind, labels.predicted, labels.actual, labels.probability) == (
        "class",
        "spam",
        "ham",
        0.9,
    )
    flags = Outcome.of(CALL_ID, predicted=True, actual=False)
    assert (flags.kind, flags.predicted, flags.actual) == ("class", "true", "false")
    # A probability of True for a true/false truth: the likelier label, and its probability.
    unlikely = Outcome.of(CALL_ID, predicted=0.2, actual=True)
    assert (unlikely.predicted, unlikely.actual, unlikely.probability) == ("false", "true", 0.8)
    numbers = Outcome.of(CALL_ID, predicted=4, actual=3.5, name="stars")
    assert (numbers.kind, numbers.predicted_value, numbers.actual_value, numbers.name) == (
        "number",
        4.0,
        3.5,
        "stars",
    )
    assert (numbers.predicted, numbers.actual, numbers.probability) == (None, None, None)


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"predicted": "spam", "actual": 1.0}, "actual"),
        ({"predicted": 2.0, "actual": "ham"}, "actual"),
        ({"predicted": "spam", "actual": "ham", "probability": 1.5}, "probability"),
        ({"predicted": 1.5, "actual": True}, "predicted"),
        ({"predicted": 0.7, "actual": True, "probability": 0.7}, "probability"),
        ({"predicted": 3.0, "actual": 2.0, "probability": 0.5}, "probability"),
        ({"predicted": "", "actual": "ham"}, "predicted"),
        ({"predicted": "x" * 201, "actual": "ham"}, "predicted"),
        ({"predicted": 1e12, "actual": 2.0}, "predicted_value"),
        ({"predicted": "a", "actual": "b", "name": ""}, "name"),
    ],
)
def test_an_outcome_that_cannot_be_right_is_refused_naming_the_field(
    given: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRecord) as error:
        Outcome.of(CALL_ID, **given)
    assert error.value.field == field


def test_the_sdk_records_outcomes_into_the_store_with_the_calls_model_and_feature(
    store_target: str,
) -> None:
    path = store_target
    aivitals.configure(store=path, endpoint=False, log_to=None, flush_interval_s=0.05)
    try:
        call = aivitals.record(
            Call(provider="openai", model="gpt-4o-mini", latency_ms=80.0, feature="triage")
        )
        returned = aivitals.outcome(call.id, predicted="bug", actual="question", probability=0.6)
        assert returned is not None and returned.model == "gpt-4o-mini"
        assert aivitals.outcome(call.id, predicted=0.3, actual=0.25, name="urgency") is not None
        # Refused, logged, never raised into the application:
        assert aivitals.outcome(call.id, predicted="bug", actual=2.0) is None
        assert aivitals.outcome(call.id, predicted=object(), actual="x") is None  # type: ignore[arg-type]  # what an application may pass
        assert aivitals.flush(timeout_s=10)
    finally:
        reset()
    store = SqlStore.open(path)
    try:
        outcomes = sorted(stored_outcomes(store), key=lambda outcome: outcome.name)
    finally:
        store.close()
    assert [(o.name, o.kind, o.model, o.feature, o.call_id) for o in outcomes] == [
        ("default", "class", "gpt-4o-mini", "triage", call.id),
        ("urgency", "number", "gpt-4o-mini", "triage", call.id),
    ]
    assert (outcomes[0].predicted, outcomes[0].actual, outcomes[0].probability) == (
        "bug",
        "question",
        0.6,
    )
    assert (outcomes[1].predicted_value, outcomes[1].actual_value) == (0.3, 0.25)


def test_an_outcome_held_through_a_store_outage_is_stored_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "aivitals.db"
    pending = tmp_path / "pending"
    store = SqlStore.open(path)
    sink = StoreSink(store, pending_dir=pending)
    recorder = Recorder(batch_sinks=[sink], flush_interval_s=0.05)
    blocker = sqlite3.connect(path, isolation_level=None, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # nobody else may write: the store is "down"
    outcome = Outcome.of(CALL_ID, predicted="a", actual="b")
    try:
        recorder.record_outcome(outcome)
        assert recorder.flush(timeout_s=30)
        assert sink.pending == 1
        recorder.close(timeout_s=1)  # still locked: the outcome goes to the pending folder
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert sink.spilled == 1 and sink.lost_at_close == 0
    reopened = SqlStore.open(path)
    again = StoreSink(reopened, pending_dir=pending)
    assert again.replayed == 1
    assert [o.id for o in stored_outcomes(reopened)] == [outcome.id]
    again.close()


def test_every_outcome_text_fits_its_column() -> None:
    for name, limit in OUTCOME_TEXT_CHARS.items():
        column = schema.outcomes.c[name].type
        assert isinstance(column, sqlalchemy.String) and column.length == limit, name


@pytest.fixture
def served(store_target: str) -> Iterator[Served]:
    """The app over a fresh store of each engine."""
    with serve_app(SqlStore.open(store_target)) as served:
        yield served


def test_posted_outcomes_are_in_the_store_when_the_202_comes(served: Served) -> None:
    call = served.client.post("/api/v1/calls", json=call_json(feature="triage"))
    call_id = call.json()["ids"][0]
    reply = served.client.post(
        "/api/v1/outcomes",
        json={
            "outcomes": [
                {"call_id": call_id, "predicted": "spam", "actual": "ham", "probability": 0.75},
                {"call_id": call_id, "predicted": 0.9, "actual": True, "name": "toxic"},
                {"call_id": call_id, "predicted": 3, "actual": 4.5, "name": "stars"},
            ]
        },
    )
    assert reply.status_code == 202, reply.text
    assert reply.json()["accepted"] == 3
    assert served.store is not None
    # No flush: a 202 means committed.
    by_name = {o.name: o for o in stored_outcomes(served.store)}
    assert set(by_name) == {"default", "toxic", "stars"}
    assert (by_name["default"].predicted, by_name["default"].probability) == ("spam", 0.75)
    assert (by_name["toxic"].predicted, by_name["toxic"].probability) == ("true", 0.9)
    assert (by_name["stars"].predicted_value, by_name["stars"].actual_value) == (3.0, 4.5)
    # The stored call's model and feature were copied, as for scores.
    assert {(o.model, o.feature) for o in by_name.values()} == {("gpt-4o-mini", "triage")}
    one = served.client.post(
        "/api/v1/outcomes", json={"call_id": call_id, "predicted": "a", "actual": "a"}
    )
    assert one.status_code == 202 and one.json()["accepted"] == 1


def test_bad_outcomes_are_a_422_naming_each_field_and_nothing_is_stored(served: Served) -> None:
    good = {"call_id": CALL_ID, "predicted": "a", "actual": "b"}
    reply = served.client.post(
        "/api/v1/outcomes",
        json={
            "outcomes": [
                good,
                {**good, "probability": 1.5},
                {"call_id": CALL_ID, "predicted": "a", "actual": 2.0},
                {"call_id": CALL_ID, "actual": "b"},
                {**good, "predicted": [1, 2]},
            ]
        },
    )
    assert reply.status_code == 422, reply.text
    fields = {item["field"] for item in reply.json()["fields"]}
    assert {"outcomes.1.probability", "outcomes.3.predicted"} <= fields
    assert any(field.startswith("outcomes.4.predicted") for field in fields)
    # Types pass but the pair does not: the record itself names the field.
    mixed = served.client.post(
        "/api/v1/outcomes", json={"outcomes": [good, {**good, "actual": 2.0}]}
    )
    assert mixed.status_code == 422
    assert [item["field"] for item in mixed.json()["fields"]] == ["outcomes.1.actual"]
    assert served.store is not None and stored_outcomes(served.store) == []


def test_outcomes_need_the_ingest_key_and_the_exporter_sends_them(tmp_path: Path) -> None:
    key = "ingest-key-0123456789"
    with (
        serve_app(SqlStore.open(tmp_path / "a.db"), ingest_key=key) as served,
        serve_in_thread(served.client.app) as origin,
    ):
        body = {"call_id": CALL_ID, "predicted": "a", "actual": "b"}
        assert served.client.post("/api/v1/outcomes", json=body).status_code == 401
        exporter = HttpExporter(origin, api_key=key, spool_dir=tmp_path / "spool")
        recorder = Recorder(batch_sinks=[exporter], flush_interval_s=0.05)
        at = datetime(2026, 11, 3, 11, 0, tzinfo=UTC)  # whole milliseconds, as stored
        sent = [
            Outcome.of(CALL_ID, predicted="a", actual="b", probability=0.5, created_at=at),
            Outcome.of(CALL_ID, predicted=False, actual=True, name="flag", created_at=at),
            Outcome.of(CALL_ID, predicted=2.5, actual=0.0, name="stars", created_at=at),
        ]
        for outcome in sent:
            recorder.record_outcome(outcome)
        assert recorder.flush(timeout_s=30)
        recorder.close()
        assert (exporter.rejected, exporter.dropped) == (0, 0)
        assert served.store is not None
        assert sorted(stored_outcomes(served.store), key=lambda o: o.name) == sorted(
            sent, key=lambda o: o.name
        )
