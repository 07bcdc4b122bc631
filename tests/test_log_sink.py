from __future__ import annotations

import io
import json
import logging
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from aivitals.model import Score
from aivitals.recorder import Recorder
from aivitals.sinks.log import JsonLogSink

from .support.helpers import make_call


def test_one_json_line_per_call_with_its_fields() -> None:
    out = io.StringIO()
    sink = JsonLogSink(stream=out)
    first = make_call(cost_usd=Decimal("0.00021"), feature="search", tags={"region": "eu"})
    second = make_call(status="error", error_type="timeout")
    sink.write_calls([first, second])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    assert lines[0]["event"] == "llm.call"
    assert lines[0]["id"] == first.id
    assert lines[0]["cost_usd"] == 0.00021
    assert lines[0]["input_tokens"] == 1000
    assert lines[0]["tags"] == {"region": "eu"}
    assert "cached_input_tokens" not in lines[0]  # zero counts are left out
    assert lines[1]["error_type"] == "timeout"


def test_scores_and_file_target(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonLogSink(path=path)
    sink.write_scores([Score(call_id="c1", name="relevance", value=0.9)])
    sink.close()
    event = json.loads(path.read_text())
    assert event["event"] == "llm.score" and event["value"] == 0.9


def test_logger_target(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.calls")
    sink = JsonLogSink(logger=logger)
    with caplog.at_level(logging.INFO, logger="test.calls"):
        sink.write_calls([make_call()])
    assert json.loads(caplog.records[0].getMessage())["model"] == "gpt-4o-mini"


def test_one_target_only() -> None:
    with pytest.raises(ValueError, match="one of"):
        JsonLogSink(stream=io.StringIO(), logger=logging.getLogger("x"))


def test_an_item_that_cannot_be_json_is_left_out_and_counted_and_the_rest_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The record refuses a lone surrogate in a tag key now; an item built around the check (as
    # older versions let through) once failed the whole batch, so every line of it was lost.
    out = io.StringIO()
    sink = JsonLogSink(stream=out)
    calls = [make_call(id=f"c{i}") for i in range(4)]
    msgspec.structs.force_setattr(calls[1], "tags", {"\ud800": "x"})
    msgspec.structs.force_setattr(calls[2], "model", "gpt\udfff")
    with caplog.at_level(logging.WARNING, logger="aivitals.sinks"):
        sink.write_calls(calls)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["id"] for line in lines] == ["c0", "c3"]
    assert sink.lost() == {"unencodable": 2}
    assert "left out 2" in caplog.text and "'c1'" in caplog.text and "'c2'" in caplog.text
    score = Score(call_id="c0", name="relevance", value=0.5)
    msgspec.structs.force_setattr(score, "comment", "\ud83d")
    sink.write_scores([score, Score(call_id="c3", name="relevance", value=0.7)])
    assert json.loads(out.getvalue().splitlines()[-1])["call_id"] == "c3"
    assert sink.lost() == {"unencodable": 3}


def test_the_recorder_counts_what_the_log_sink_left_out() -> None:
    out = io.StringIO()
    recorder = Recorder(batch_sinks=[JsonLogSink(stream=out)], flush_interval_s=0.05)
    try:
        bad = make_call(id="bad", price_source="test")
        msgspec.structs.force_setattr(bad, "tags", {"\ud800": "x"})
        recorder.record(make_call(id="good", price_source="test"))
        recorder.record(bad)
        assert recorder.flush(timeout_s=10)
        assert recorder.lost()[("log", "unencodable")] == 1
        assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == ["good"]
    finally:
        recorder.close()
