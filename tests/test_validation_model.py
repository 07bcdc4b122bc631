"""The one validator: `Call` and `Score` refuse what no source can sanely send or the store hold.

The figures are written out here (docs/store.md, "Limits"); the property test checks the record
against a plain statement of the rules, so the quick valid-case check in `Call.__post_init__`
cannot let through what the rules refuse.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from aivitals import model
from aivitals.bounds import CALL_TEXT_CHARS, SCORE_TEXT_CHARS
from aivitals.model import Call, InvalidRecord, Score
from aivitals.store import schema
from tests.support.limits import CALL_TEXT, DAY_MS, MAX_TOKENS, MAX_TOOL_USES, MAX_USD

SCORE_TEXT = {"id": 36, "call_id": 36, "name": 200, "source": 64, "comment": 4096, "model": 200}


def call(**overrides: Any) -> Call:
    fields: dict[str, Any] = {"provider": "openai", "model": "gpt-4o-mini", "latency_ms": 100.0}
    fields.update(overrides)
    return Call(**fields)


def refused_field(**overrides: Any) -> str:
    with pytest.raises(InvalidRecord) as raised:
        call(**overrides)
    assert str(raised.value).startswith(f"{raised.value.field}: ")
    return raised.value.field


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"latency_ms": 1.7976931348623157e308}, "latency_ms"),
        ({"latency_ms": 1e16}, "latency_ms"),
        ({"latency_ms": math.inf}, "latency_ms"),
        ({"latency_ms": DAY_MS + 0.001}, "latency_ms"),
        ({"ttft_ms": 100.5}, "ttft_ms"),
        ({"latency_ms": DAY_MS, "ttft_ms": math.nan}, "ttft_ms"),
        ({"queue_ms": DAY_MS + 1}, "queue_ms"),
        ({"queue_ms": -1.0}, "queue_ms"),
        ({"input_tokens": 9223372036854775807}, "input_tokens"),
        ({"input_tokens": MAX_TOKENS + 1}, "input_tokens"),
        ({"output_tokens": MAX_TOKENS + 1}, "output_tokens"),
        ({"context_window": MAX_TOKENS + 1}, "context_window"),
        ({"tokens_estimated": "yes"}, "tokens_estimated"),
        ({"cost_usd": Decimal("1e300")}, "cost_usd"),
        ({"cost_usd": MAX_USD + Decimal("0.000001")}, "cost_usd"),
        ({"input_cost_usd": Decimal("NaN")}, "input_cost_usd"),
        ({"output_cost_usd": Decimal("Infinity")}, "output_cost_usd"),
        ({"saved_usd": Decimal("-1")}, "saved_usd"),
        ({"cost_usd": Decimal("0." + "3" * 39)}, "cost_usd"),
        ({"started_at": datetime(1999, 12, 31, 23, 59, tzinfo=UTC)}, "started_at"),
        ({"started_at": datetime(1, 1, 1, tzinfo=UTC)}, "started_at"),
        ({"started_at": datetime(9999, 12, 31, tzinfo=UTC)}, "started_at"),
        ({"started_at": "2026-01-01T00:00:00Z"}, "started_at"),
        ({"id": ""}, "id"),
        ({"tags": None}, "tags"),
        ({"tags": {"k": 1}}, "tags"),
        ({"tags": {"": "v"}}, "tags"),
        ({"tags": {"\ud800": "v"}}, "tags"),
        ({"tags": {"k": "a\x00"}}, "tags"),
        ({"tags": {f"k{i}": "v" for i in range(65)}}, "tags"),
        ({"tags": {"k" * 129: "v"}}, "tags"),
        ({"tags": {"k": "v" * 513}}, "tags"),
        (
            {"input_tokens": 100, "cache_write_tokens": 10, "cache_write_1h_tokens": 11},
            "cache_write_1h_tokens",
        ),
        ({"cache_write_1h_tokens": -1}, "cache_write_1h_tokens"),
        ({"server_tool_uses": {"web_search": -1}}, "server_tool_uses"),
        ({"server_tool_uses": {"web_search": MAX_TOOL_USES + 1}}, "server_tool_uses"),
        ({"server_tool_uses": {"web_search": 1.0}}, "server_tool_uses"),
        ({"server_tool_uses": {"image_generation": 1}}, "server_tool_uses"),
        ({"server_tool_uses": None}, "server_tool_uses"),
        ({"service_tier": ""}, "service_tier"),
        ({"quantization": ""}, "quantization"),
    ],
)
def test_out_of_bounds_values_are_refused_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    assert refused_field(**overrides) == field


@pytest.mark.parametrize(("field", "size"), sorted(CALL_TEXT.items()))
def test_every_text_field_is_bounded_and_clean(field: str, size: int) -> None:
    assert call(**{field: "x" * size}) is not None
    assert call(**{field: "é" * size}) is not None  # characters, not bytes
    assert refused_field(**{field: "x" * (size + 1)}) == field
    assert refused_field(**{field: "ok\ud800"}) == field
    assert refused_field(**{field: "ok\udfffé"}) == field
    assert refused_field(**{field: "o\x00k"}) == field
    assert refused_field(**{field: 12}) == field


def test_the_billing_detail_within_its_limits_passes() -> None:
    made = call(
        input_tokens=100,
        cache_write_tokens=60,
        cache_write_1h_tokens=60,
        server_tool_uses={
            "web_search": MAX_TOOL_USES,
            "web_fetch": 0,
            "code_execution": 2,
            "file_search": 1,
        },
        service_tier="priority",
        quantization="q4_K_M",
    )
    assert (made.cache_write_1h_tokens, made.server_tool_uses["web_search"]) == (60, MAX_TOOL_USES)


def test_a_refusal_never_echoes_the_text() -> None:
    with pytest.raises(InvalidRecord) as raised:
        call(user="secret-" * 1000)
    assert "secret" not in str(raised.value)
    assert str(raised.value) == "user: must be at most 200 characters, got 7,000"


def test_valid_non_ascii_text_and_tags_pass() -> None:
    made = call(user="José 日本 👩‍💻", feature="résumé", tags={"région": "Île-de-France 🇫🇷"})
    assert made.user == "José 日本 👩‍💻"
    assert made.tags == {"région": "Île-de-France 🇫🇷"}


def test_the_limits_themselves_pass() -> None:
    made = call(
        latency_ms=DAY_MS,
        ttft_ms=DAY_MS,
        queue_ms=DAY_MS,
        input_tokens=MAX_TOKENS,
        cached_input_tokens=MAX_TOKENS // 2,
        cache_write_tokens=MAX_TOKENS // 2,
        output_tokens=MAX_TOKENS,
        reasoning_tokens=MAX_TOKENS,
        context_window=MAX_TOKENS,
        cost_usd=MAX_USD,
        input_cost_usd=Decimal(0),
        saved_usd=Decimal("0." + "3" * 38),  # 40 characters
        started_at=datetime(2000, 1, 1, tzinfo=UTC),
        tags={f"k{i:03d}" + "k" * 124: "v" * 512 for i in range(64)},
    )
    assert made.latency_ms == DAY_MS
    assert call(started_at=datetime.now(UTC) + timedelta(hours=23)) is not None


def test_a_start_more_than_a_day_ahead_is_refused() -> None:
    # Built here, not at collection: "a day ahead" moves with the clock.
    assert refused_field(started_at=datetime.now(UTC) + timedelta(days=1, minutes=5)) == (
        "started_at"
    )


def test_a_stale_horizon_refuses_nothing_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    # The quick check compares with a cached "tomorrow"; a process running for days has an old
    # one, and a call started now must still pass (the full check reads the clock).
    monkeypatch.setattr(model._HORIZON, "latest", datetime(2001, 1, 1, tzinfo=UTC))
    assert call().started_at.year >= 2026
    assert model._HORIZON.latest > datetime.now(UTC)
    with pytest.raises(InvalidRecord):
        call(started_at=datetime.now(UTC) + timedelta(days=2))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"value": 1e300, "max_value": 1e301}, "value"),
        ({"min_value": -1e10}, "min_value"),
        ({"max_value": 1.7976931348623157e308}, "max_value"),
        ({"value": math.inf}, "value"),
        ({"created_at": datetime(1999, 1, 1, tzinfo=UTC)}, "created_at"),
        ({"created_at": datetime.now(UTC) + timedelta(days=3)}, "created_at"),
        ({"source": ""}, "source"),
        ({"comment": "c" * 4097}, "comment"),
        ({"comment": "bad \ud800"}, "comment"),
        ({"name": "n\x00"}, "name"),
        ({"feature": "f" * 201}, "feature"),
    ],
)
def test_score_bounds(overrides: dict[str, Any], field: str) -> None:
    fields: dict[str, Any] = {"call_id": "c1", "name": "relevance", "value": 0.5, **overrides}
    with pytest.raises(InvalidRecord) as raised:
        Score(**fields)
    assert raised.value.field == field


def test_score_within_bounds_passes() -> None:
    score = Score(call_id="c" * 36, name="elo", value=-1e9, min_value=-1e9, max_value=1e9)
    assert score.normalised == 0.0
    assert Score(call_id="c1", name="n", value=0.5, comment="très bien " * 400).comment


def test_every_limit_fits_its_store_column() -> None:
    # The store's columns are the reason for most text limits: a limit over its column would be
    # accepted here and refused by PostgreSQL after the 202.
    for table, limits in ((schema.calls, CALL_TEXT_CHARS), (schema.scores, SCORE_TEXT_CHARS)):
        for name, limit in limits.items():
            kind = table.c[name].type
            if isinstance(kind, sa.String) and kind.length is not None:
                assert limit <= kind.length, (table.name, name, limit, kind.length)
            else:
                assert isinstance(kind, sa.Text), (table.name, name)
    for name in ("cost_usd", "input_cost_usd", "output_cost_usd", "saved_usd"):
        assert schema.calls.c[name].type.length == 40  # type: ignore[attr-defined]  # a String
    assert set(CALL_TEXT) == set(CALL_TEXT_CHARS)
    assert dict(CALL_TEXT_CHARS) == CALL_TEXT
    assert {k: SCORE_TEXT_CHARS[k] for k in SCORE_TEXT} == SCORE_TEXT


# A property: for any mix of values around the limits, the record refuses exactly what the
# rules (stated here, plainly) refuse. A quick check that lets anything through fails this.

_durations = st.one_of(
    st.floats(min_value=0, max_value=DAY_MS),
    st.sampled_from([0.0, float(DAY_MS), DAY_MS + 0.5, -0.0, -1.0, 1e16, math.inf, math.nan]),
    st.integers(min_value=-5, max_value=DAY_MS + 5),
)
_counts = st.one_of(
    st.integers(min_value=0, max_value=2000),
    st.sampled_from([MAX_TOKENS, MAX_TOKENS + 1, 2**63 - 1, -1]),
)
_money = st.one_of(
    st.none(),
    st.decimals(min_value=0, max_value=2_000_000, places=9),
    st.sampled_from(
        [
            MAX_USD,
            MAX_USD + 1,
            Decimal("1e300"),
            Decimal("-0.01"),
            Decimal("NaN"),
            Decimal("0." + "7" * 38),  # 40 characters: fits
            Decimal("0." + "7" * 39),
        ]
    ),
)
_texts = st.one_of(
    st.none(),
    st.text(max_size=70),
    st.sampled_from(["x" * 64, "x" * 65, "é\ud800", "a\x00", "日本語", "x" * 201]),
)
_times = st.one_of(
    st.datetimes(
        min_value=datetime(1990, 1, 1),
        max_value=datetime(2040, 1, 1),
        timezones=st.just(UTC),
    ),
    st.sampled_from(
        [datetime(2000, 1, 1, tzinfo=UTC), datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)]
    ),
)
_tags = st.dictionaries(
    st.one_of(st.text(max_size=5), st.sampled_from(["k" * 128, "k" * 129, "\udc80"])),
    st.one_of(st.text(max_size=5), st.sampled_from(["v" * 512, "v" * 513, "a\x00"])),
    max_size=3,
)


def _clean(text: str) -> bool:
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _expected_ok(f: dict[str, Any], now: datetime) -> bool:
    def duration(v: Any) -> bool:
        return not math.isnan(v) and 0 <= v <= DAY_MS

    def money(v: Any) -> bool:
        return v is None or (v.is_finite() and 0 <= v <= MAX_USD and len(str(v)) <= 40)

    def text(v: Any, limit: int, required: bool = False) -> bool:
        if v is None:
            return not required
        return (len(v) > 0 or not required) and len(v) <= limit and _clean(v)

    tokens = [f[k] for k in ("input_tokens", "output_tokens", "cached_input_tokens")]
    return (
        duration(f["latency_ms"])
        and (f["ttft_ms"] is None or (duration(f["ttft_ms"]) and f["ttft_ms"] <= f["latency_ms"]))
        and all(0 <= t <= MAX_TOKENS for t in tokens)
        and f["cached_input_tokens"] <= f["input_tokens"]
        and money(f["cost_usd"])
        and money(f["saved_usd"])
        and datetime(2000, 1, 1, tzinfo=UTC) <= f["started_at"] <= now + timedelta(days=1)
        and text(f["provider"], 64, required=True)
        and text(f["user"], 200)
        and text(f["environment"], 64)
        and len(f["tags"]) <= 64
        and all(
            0 < len(k) <= 128 and len(v) <= 512 and _clean(k) and _clean(v)
            for k, v in f["tags"].items()
        )
    )


@settings(max_examples=1500, deadline=None)
@given(
    latency_ms=_durations,
    ttft_ms=st.one_of(st.none(), _durations),
    input_tokens=_counts,
    output_tokens=_counts,
    cached_input_tokens=_counts,
    cost_usd=_money,
    saved_usd=_money,
    started_at=_times,
    provider=_texts,
    user=_texts,
    environment=_texts,
    tags=_tags,
)
def test_the_record_refuses_exactly_what_the_rules_refuse(**fields: Any) -> None:
    now = datetime.now(UTC)
    if abs(fields["started_at"] - (now + timedelta(days=1))) < timedelta(minutes=1):
        return  # too close to the moving edge to say which side the clock reads
    try:
        Call(model="gpt-4o-mini", **fields)
        accepted = True
    except InvalidRecord:
        accepted = False
    assert accepted == _expected_ok(fields, now), fields
