from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from aivitals.query import FIELDS, Filters, QueryError, Window, check_by, parse_since, parse_where

NOW = datetime(2026, 11, 3, 12, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        (" 90M ", timedelta(minutes=90)),
    ],
)
def test_since_a_duration_ago(text: str, ago: timedelta) -> None:
    assert parse_since(text, now=NOW) == Window(start=NOW - ago, end=NOW)


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:15", datetime(2026, 11, 1, 8, 15, tzinfo=UTC)),
        ("2026-11-01T08:15:00+02:00", datetime(2026, 11, 1, 6, 15, tzinfo=UTC)),
    ],
)
def test_since_an_iso_date_or_time(text: str, start: datetime) -> None:
    window = parse_since(text, now=NOW)
    assert (window.start, window.end) == (start, NOW)
    assert window.start.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("3 parsecs", "cannot read '3 parsecs'"),
        ("", "cannot read ''"),
        ("-5m", "cannot read '-5m'"),
        ("0h", "'0h' is an empty window"),
        ("2027-01-01", "'2027-01-01' is in the future"),
        ("99999999w", "reaches too far back"),
    ],
)
def test_since_errors_say_what_would_work(text: str, problem: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_since(text, now=NOW)
    message = str(caught.value)
    assert problem in message
    assert message.startswith("--since: ")
    assert "use 30m, 24h, 7d, 2w or an ISO date like 2026-11-01" in message
    assert "\n" not in message


def test_windows_are_aware_ordered_and_utc() -> None:
    paris = timezone(timedelta(hours=1))
    window = Window(start=datetime(2026, 11, 1, 1, tzinfo=paris), end=NOW)
    assert window.start == datetime(2026, 11, 1, tzinfo=UTC) and window.start.tzinfo is UTC
    assert window.start_ms == 1_793_491_200_000
    with pytest.raises(QueryError, match="timezone-aware"):
        Window(start=datetime(2026, 11, 1), end=NOW)  # naive on purpose
    with pytest.raises(QueryError, match="before it starts"):
        Window(start=NOW, end=NOW - timedelta(seconds=1))


def test_where_reads_field_value_pairs() -> None:
    assert parse_where([]) == Filters()
    assert parse_where(["team=search", "user = ann", "feature=", "model=a=b"]) == Filters(
        team="search", user="ann", feature="", model="a=b"
    )


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        (["colour=blue"], "unknown field 'colour'; use one of model, provider, feature"),
        (["team"], "cannot read 'team'; use FIELD=VALUE, e.g. team=search"),
        (["=search"], "cannot read '=search'"),
        (["team=a", "team=b"], "team is given twice"),
        (["status=broken"], "status has no value 'broken'; use one of cancelled, error, ok"),
        (["error_type=gremlins"], "error_type has no value 'gremlins'"),
    ],
)
def test_where_errors_name_what_is_allowed(items: list[str], problem: str) -> None:
    with pytest.raises(QueryError, match=r"^--where: ") as caught:
        parse_where(items)
    assert problem in str(caught.value)


def test_by_checks_names_and_drops_repeats() -> None:
    assert check_by(["model", "team", "model"]) == ("model", "team")
    assert check_by(FIELDS) == FIELDS
    assert check_by([]) == ()
    with pytest.raises(QueryError, match="--by: unknown field 'region'; use one of model, "):
        check_by(["model", "region"])
