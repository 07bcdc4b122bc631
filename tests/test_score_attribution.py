"""A score for a known call inherits its model and feature.

``aivitals.score(aivitals.last_call_id(), "relevance", 0.9)``, as the README writes it, recorded
the score with empty model and feature, so per-model quality in Prometheus, Grafana and the live
windows stayed empty. The same through the ingest API, where evaluators send scores by call id.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aivitals
from aivitals.model import Call, Score
from aivitals.recorder import Recorder
from aivitals.sinks.memory import MemorySink
from tests.conftest import Recorded
from tests.support.server_app import call_json, served_at


def test_an_sdk_score_by_call_id_lands_in_its_calls_model_and_feature(recorded: Recorded) -> None:
    with aivitals.track(model="gpt-4o-mini", feature="search", team="growth") as call:
        call.set_usage(input_tokens=100, output_tokens=10)
    call_id = aivitals.last_call_id()
    assert call_id is not None
    returned = aivitals.score(call_id, "relevance", 0.9)
    assert returned is not None
    assert (returned.model, returned.feature) == ("gpt-4o-mini", "search")
    (stored,) = recorded.scores()
    assert (stored.model, stored.feature) == ("gpt-4o-mini", "search")
    labels = {"name": "relevance", "model": "gpt-4o-mini", "feature": "search"}
    assert recorded.metric("aivitals_quality_score_count", labels) == 1.0
    windows = recorded.runtime.windows
    assert windows is not None
    assert windows.read(minutes=5, model="gpt-4o-mini").quality == {"relevance": 0.9}


def test_a_scores_own_model_and_feature_win_and_an_unknown_call_stays_unlabelled() -> None:
    recorder = Recorder(batch_sinks=[MemorySink()])
    try:
        recorder.record(Call(id="c1", provider="openai", model="gpt-4o", latency_ms=5.0))
        own = recorder.record_score(Score(call_id="c1", name="n", value=0.5, model="judge-x"))
        assert (own.model, own.feature) == ("judge-x", None)  # the call has no feature either
        unknown = recorder.record_score(Score(call_id="nobody", name="n", value=0.5))
        assert (unknown.model, unknown.feature) == (None, None)
    finally:
        recorder.close()


def test_an_ingested_score_by_call_id_lands_in_its_calls_model_and_feature(
    tmp_path: Path,
) -> None:
    with served_at(tmp_path / "a.db") as served:
        call = call_json(model="gpt-4o", feature="chat", team="support")
        posted = served.client.post("/api/v1/calls", json=call)
        assert posted.status_code == 202, posted.text
        (call_id,) = posted.json()["ids"]
        score = {"call_id": call_id, "name": "helpfulness", "value": 0.25}
        assert served.client.post("/api/v1/scores", json=score).status_code == 202
        metrics = served.client.get("/metrics").text
        assert (
            'aivitals_quality_score_count{feature="chat",model="gpt-4o",name="helpfulness"} 1.0'
            in metrics
        )
        assert served.runtime.recorder.flush(timeout_s=10)
        with sqlite3.connect(tmp_path / "a.db") as db:
            rows = db.execute("SELECT model, feature FROM scores").fetchall()
        assert rows == [("gpt-4o", "chat")]


def test_a_score_for_a_call_stored_before_a_restart_takes_its_labels_from_the_store(
    tmp_path: Path,
) -> None:
    with served_at(tmp_path / "a.db") as served:
        posted = served.client.post("/api/v1/calls", json=call_json(model="o3-mini", feature="qa"))
        assert posted.status_code == 202, posted.text
        (call_id,) = posted.json()["ids"]
    with served_at(tmp_path / "a.db") as restarted:  # a new server: it has recorded no call
        score = {"call_id": call_id, "name": "helpfulness", "value": 0.75}
        assert restarted.client.post("/api/v1/scores", json=score).status_code == 202
        metrics = restarted.client.get("/metrics").text
        assert (
            'aivitals_quality_score_count{feature="qa",model="o3-mini",name="helpfulness"} 1.0'
            in metrics
        )
        assert restarted.runtime.recorder.flush(timeout_s=10)
    with sqlite3.connect(tmp_path / "a.db") as db:
        rows = db.execute("SELECT model, feature FROM scores").fetchall()
    assert rows == [("o3-mini", "qa")]
