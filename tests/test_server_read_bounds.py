"""Bounded reads: every numeric and time parameter of the read API answers 4xx naming itself.

``since=0001-01-01&step=minute`` once tried to build a billion buckets (a MemoryError 500), an
offset past int64 was a 500, and so was a start in year 1 at +14:00 on every route. The limits
are written here as figures (docs/queries.md): 21,600 buckets, an offset of 1,000,000.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.server_app import NOW, Served, call_json, get_ok, served_with

READS = (
    "/api/v1/summary",
    "/api/v1/breakdown",
    "/api/v1/timeseries",
    "/api/v1/calls",
    "/api/v1/histogram",
    "/api/v1/quality",
    "/api/v1/values",
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_with(tmp_path / "aivitals.db", [call_json()]) as served:
        yield served


def refused(served: Served, path: str, status: int, **params: Any) -> tuple[list[str], str]:
    """The fields a refusal names, and its whole message (the error and each field's)."""
    reply = served.client.get(path, params=params)
    assert reply.status_code == status, reply.text
    body = reply.json()
    fields = body["fields"]
    return [f["field"] for f in fields], " ".join([body["error"], *(f["message"] for f in fields)])


YEAR_1 = datetime(1, 1, 1, tzinfo=UTC)
STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


@pytest.mark.parametrize(
    ("start", "step"),
    [(YEAR_1, "minute"), (YEAR_1, "hour"), (YEAR_1, "day"), (NOW - timedelta(days=16), "minute")],
)
def test_a_time_series_of_too_many_buckets_is_a_400_saying_the_limit_and_the_way_out(
    served: Served, start: datetime, step: str
) -> None:
    # Whole buckets from the start (aligned to the step here) up to NOW, the last one partial.
    buckets = math.ceil((NOW - start) / STEP[step])
    since = start.isoformat()
    fields, message = refused(served, "/api/v1/timeseries", 400, since=since, step=step)
    assert fields == ["query.step"]
    assert f"{buckets:,}" in message and "21,600" in message
    assert "shorter window" in message and "since" in message
    if step != "day":
        assert "larger step" in message


def test_a_time_series_just_within_the_limit_answers(served: Served) -> None:
    # 15 days of minutes from a whole minute: 21,600 buckets.
    body = get_ok(served, "/api/v1/timeseries", since="2026-10-19T12:00:00Z", step="minute")
    assert sum(p["calls"] for p in body["points"]) == 1
    assert get_ok(served, "/api/v1/timeseries", since="2000-01-01", step="day")["points"]


@pytest.mark.parametrize("offset", [2**63, 2**64, 10**30, 1_000_001])
def test_an_offset_past_the_cap_is_a_422_naming_it(served: Served, offset: int) -> None:
    fields, message = refused(served, "/api/v1/calls", 422, offset=offset)
    assert fields == ["query.offset"]
    assert "1000000" in message.replace(",", "")


def test_the_largest_offset_answers(served: Served) -> None:
    body = get_ok(served, "/api/v1/calls", since="24h", offset=1_000_000)
    assert body["calls"] == [] and body["offset"] == 1_000_000


@pytest.mark.parametrize(
    ("path", "name"), [("/api/v1/calls", "limit"), ("/api/v1/values", "limit")]
)
@pytest.mark.parametrize("value", [2**63, -(2**63), 0, 10_001])
def test_a_limit_out_of_range_is_a_422_naming_it(
    served: Served, path: str, name: str, value: int
) -> None:
    fields, _ = refused(served, path, 422, **{name: value})
    assert fields == [f"query.{name}"]


@pytest.mark.parametrize(
    "since",
    [
        "0001-01-01T00:00:00+14:00",  # year 0 in UTC
        "1" * 5000 + "m",  # more digits than Python reads
        "99999999999999999999w",
        "10000-01-01",
        "2026-13-01",
        "2999-01-01",  # the future
    ],
)
def test_a_since_no_window_can_hold_is_a_422_on_every_route(served: Served, since: str) -> None:
    for path in READS:
        fields, message = refused(served, path, 422, since=since)
        assert fields == ["query.since"], path
        assert len(message) < 300


def test_the_earliest_since_answers_on_every_route(served: Served) -> None:
    for path in READS:
        params = {"step": "day"} if path.endswith(("timeseries", "quality")) else {}
        if path.endswith("timeseries"):
            params["since"] = "2000-01-01"
        else:
            params["since"] = "0001-01-01"
        get_ok(served, path, **params)


@pytest.mark.parametrize("path", ["/api/v1/timeseries", "/api/v1/histogram"])
@pytest.mark.parametrize("by", ["\x85", " ", ",", "model,team"])
def test_a_split_by_no_field_or_several_is_a_422_naming_by(
    served: Served, path: str, by: str
) -> None:
    fields, _ = refused(served, path, 422, by=by)
    assert fields == ["query.by"]


def test_a_where_value_holding_nul_is_a_422_naming_where(served: Served) -> None:
    fields, _ = refused(served, "/api/v1/summary", 422, where="model=gpt\x00")
    assert fields == ["query.where"]


@pytest.mark.parametrize("call_id", ["x" * 5000, "a%00b", "%F0%9F%92%A9" * 10])
def test_a_call_id_no_stored_call_can_have_is_a_404(served: Served, call_id: str) -> None:
    reply = served.client.get(f"/api/v1/calls/{call_id}")
    assert reply.status_code == 404, reply.text
    assert reply.json()["error"] == "no stored call has this id"


def test_a_store_that_cannot_be_read_is_a_503_saying_why(tmp_path: Path) -> None:
    db = tmp_path / "aivitals.db"
    with served_with(db, [call_json()]) as served:
        assert served.store is not None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        served.store.engine.dispose()  # new connections find an empty file, no tables
        for path in READS:
            reply = served.client.get(path)
            assert reply.status_code == 503, (path, reply.text)
            assert "reading" in reply.json()["error"]
