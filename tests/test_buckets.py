"""A coarser bucket made of one finer bucket's calls copies its row: the rows stay exact."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aivitals.model import Call
from aivitals.store.buckets import grouped
from aivitals.store.rollup import rollup_rows
from aivitals.store.rows import to_nusd
from aivitals.store.sketch import Sketch
from aivitals.store.user_rollup import user_rows

MIDNIGHT = datetime(2025, 3, 10, tzinfo=UTC)


def _by_granularity(
    dimensions: list[tuple[Any, ...] | None], seconds: list[int], granularities: tuple[int, ...]
) -> dict[tuple[Any, ...], list[int]]:
    """Each bucket's calls, grouped at every granularity independently, in call order."""
    buckets: dict[tuple[Any, ...], list[int]] = {}
    for size in granularities:
        for index, (values, second) in enumerate(zip(dimensions, seconds, strict=True)):
            if values is not None:
                buckets.setdefault((size, second // size * size, *values), []).append(index)
    return buckets


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.tuples(st.sampled_from(["a", "b", "c"]))),
            st.integers(min_value=0, max_value=3 * 86400),
        ),
        max_size=60,
    ),
    st.sampled_from([(60, 3600, 86400), (3600, 86400), (60,), (60, 120, 3600)]),
)
def test_every_bucket_is_built_or_one_finer_buckets_calls(
    calls: list[tuple[tuple[str] | None, int]], granularities: tuple[int, ...]
) -> None:
    dimensions = [values for values, _ in calls]
    seconds = [second for _, second in calls]
    members, same = grouped(dimensions, seconds, granularities)
    expected = _by_granularity(dimensions, seconds, granularities)
    assert set(members) | set(same) == set(expected)
    assert not set(members) & set(same)
    for key, indices in members.items():
        assert indices == expected[key]
    for key, part in same.items():
        # The bucket copied from holds exactly this bucket's calls, and is one step finer.
        assert expected[part] == expected[key]
        assert granularities.index(part[0]) == granularities.index(key[0]) - 1
        assert part[2:] == key[2:]
    for key in members:
        if key[0] != granularities[0]:
            finer = granularities[granularities.index(key[0]) - 1]
            parts = {(finer, seconds[i] // finer * finer) for i in members[key]}
            assert len(parts) > 1


def test_granularities_must_nest() -> None:
    with pytest.raises(ValueError, match="not a multiple of 60"):
        grouped([("a",)], [0], (60, 90))


def _calls(seconds: list[float], rng: random.Random) -> list[Call]:
    calls = []
    for offset in seconds:
        latency = rng.uniform(0.1, 4000.0)
        calls.append(
            Call(
                provider="openai",
                model=rng.choice(["gpt-4o", "gpt-4o-mini"]),
                latency_ms=latency,
                ttft_ms=rng.choice([None, rng.uniform(0.01, latency)]),
                output_tokens=rng.randint(0, 900),
                started_at=MIDNIGHT + timedelta(seconds=offset),
                cost_usd=rng.choice([None, Decimal(rng.randint(0, 10**9)) / 10**12]),
                user=rng.choice(["ana", "bo", None]),
            )
        )
    return calls


def _by_hand(members: list[Call]) -> dict[str, Any]:
    latencies = ttfts = speeds = 0.0
    ttft_values = []
    speed_count = 0
    for c in members:
        latencies += c.latency_ms
        if c.ttft_ms is not None:
            ttfts += c.ttft_ms
            ttft_values.append(c.ttft_ms)
        if c.output_tokens and c.status == "ok":
            speeds += c.output_tokens * 1000.0 / (c.latency_ms - (c.ttft_ms or 0.0))
            speed_count += 1
    return {
        "calls": len(members),
        "cost_nusd": sum(to_nusd(c.cost_usd) or 0 for c in members),
        "unpriced": sum(c.cost_usd is None for c in members),
        "output_tokens": sum(c.output_tokens for c in members),
        "latency_sum_ms": float(latencies).hex(),
        "ttft_count": len(ttft_values),
        "ttft_sum_ms": float(ttfts).hex(),
        "speed_count": speed_count,
        "speed_sum": float(speeds).hex(),
        "latency_sketch": Sketch.of([c.latency_ms for c in members]).to_bytes(),
        "ttft_sketch": Sketch.of(ttft_values).to_bytes(),
    }


def _checked(row: dict[str, Any]) -> dict[str, Any]:
    picked = {name: row[name] for name in _by_hand([])}
    for name in ("latency_sum_ms", "ttft_sum_ms", "speed_sum"):
        picked[name] = float(row[name]).hex()
    return picked


@pytest.mark.parametrize(
    "spread",
    [
        # A live batch: seconds apart, one minute, so every hour and day row is a copy.
        [5.0 + i * 0.05 for i in range(300)],
        # Across a minute, an hour and a day, the calls out of order.
        [-15.0 + (i * 7919 % 300) * 0.1 for i in range(300)],
        # Over two days, most rows built from many finer rows.
        [(i * 104729 % 1000) * 172.8 for i in range(1000)],
    ],
)
def test_rollup_and_user_rows_are_their_calls_at_every_granularity(spread: list[float]) -> None:
    calls = _calls(spread, random.Random(len(spread)))
    rows = rollup_rows(calls)
    assert len(rows) == len({(r["granularity"], r["bucket_start"], r["model"]) for r in rows})
    expected_keys = {
        (size, int(c.started_at.timestamp()) // size * size, c.model)
        for c in calls
        for size in (60, 3600, 86400)
    }
    assert {(r["granularity"], r["bucket_start"], r["model"]) for r in rows} == expected_keys
    for row in rows:
        size = row["granularity"]
        members = [
            c
            for c in calls
            if c.model == row["model"]
            and int(c.started_at.timestamp()) // size * size == row["bucket_start"]
        ]
        assert _checked(row) == _by_hand(members), (size, row["bucket_start"])
    users = user_rows(calls)
    assert {(r["granularity"], r["bucket_start"], r["user"], r["model"]) for r in users} == {
        (size, int(c.started_at.timestamp()) // size * size, c.user or "", c.model)
        for c in calls
        for size in (3600, 86400)
    }
    for row in users:
        size = row["granularity"]
        members = [
            c
            for c in calls
            if c.model == row["model"]
            and (c.user or "") == row["user"]
            and int(c.started_at.timestamp()) // size * size == row["bucket_start"]
        ]
        assert _checked(row) == _by_hand(members), (size, row["bucket_start"], row["user"])
