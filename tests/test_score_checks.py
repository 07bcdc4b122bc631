"""A `Score`'s quick check for the valid case refuses nothing the field-by-field checks pass,
and passes nothing they refuse: each value at the edge of the quick check, both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from aivitals.model import InvalidRecord, Score

BASE: dict[str, Any] = {"call_id": "c1", "name": "relevance", "value": 0.5}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"value": True}, "value"),
        ({"min_value": False}, "min_value"),
        ({"value": 0.5, "min_value": 0.5, "max_value": 0.5}, "max_value"),
        ({"value": float("nan"), "min_value": 0.0}, "value"),
        ({"max_value": float("inf")}, "max_value"),
        ({"id": "i" * 37}, "id"),
        ({"call_id": "c" * 37}, "call_id"),
        ({"source": "s" * 65}, "source"),
        ({"model": "m\x00"}, "model"),
        ({"model": 3}, "model"),
        ({"created_at": datetime(2026, 1, 1)}, "created_at"),  # naive
        ({"created_at": "2026-01-01T00:00:00Z"}, "created_at"),
        ({"name": "\udfff"}, "name"),
    ],
)
def test_what_the_checks_refuse_is_refused(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        Score(**{**BASE, **overrides})
    assert raised.value.field == field


@pytest.mark.parametrize(
    "overrides",
    [
        {"value": 0, "min_value": 0, "max_value": 1},  # whole numbers are numbers
        {"value": 1.0},
        {"id": "i" * 36, "call_id": "c" * 36, "source": "s" * 64},
        {"model": "", "feature": "", "comment": ""},  # optional text may be empty
        {"name": "pertinence évaluée", "feature": "résumé"},  # not ASCII: the slow way, passes
        {"created_at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5)))},
        {"created_at": datetime.now(UTC) + timedelta(hours=23)},  # within the day ahead
    ],
)
def test_what_the_checks_pass_is_kept_as_given(overrides: dict[str, Any]) -> None:
    score = Score(**{**BASE, **overrides})
    assert {name: getattr(score, name) for name in overrides} == overrides
