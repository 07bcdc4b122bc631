from __future__ import annotations

import io
import json
import logging
from decimal import Decimal
from pathlib import Path

import pytest

from aivitals.model import Score
from aivitals.sinks.log import JsonLogSink

from .helpers import make_call


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
