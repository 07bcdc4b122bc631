"""User rollups (schema 8): the writer keeps them, the questions about users read them, and the
answers are the raw calls' (counts and money exact, percentiles within 1%), on both engines.

Expected figures are computed here with numpy from the calls written, never by the code under
test.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from aivitals.model import Call, Score
from aivitals.query import Filters, Queries, Window
from aivitals.store import bounds, schema, user_rollup
from aivitals.store.rollup import call_figures
from aivitals.store.sketch import MIN_VALUE, Sketch, _grouped_at_once, group_blobs
from aivitals.store.sql import SqlStore

from .support.helpers import make_call

T0 = datetime(2026, 11, 2, tzinfo=UTC)
USERS = ("ann", "bob", "cy", None)
MODELS = ("gpt-4o", "gpt-4o-mini")


def history(seed: int, n: int = 600) -> list[Call]:
    """Calls over three days, some users absent, some calls unpriced."""
    rng = random.Random(seed)
    return [
        make_call(
            started_at=T0 + timedelta(seconds=rng.uniform(0, 3 * 86400)),
            user=rng.choice(USERS),
            model=rng.choice(MODELS),
            latency_ms=250.0 + rng.lognormvariate(6.0, 0.6),
            ttft_ms=rng.choice([None, rng.uniform(20, 200)]),
            input_tokens=rng.randrange(1, 5000),
            output_tokens=rng.randrange(0, 900),
            cost_usd=rng.choice([None, Decimal(rng.randrange(1, 10**7)) / 10**9]),
            feature=rng.choice(["search", "chat"]),
        )
        for _ in range(n)
    ]


def written(target: str, calls: list[Call], scores: Sequence[Score] = ()) -> SqlStore:
    """A store with ``calls`` written in batches of 50 (so buckets are merged across batches),
    the scores first: each waits for its call."""
    store = SqlStore.open(target)
    if scores:
        store.write([], list(scores))
    for start in range(0, len(calls), 50):
        store.write(calls[start : start + 50], [])
    return store


def chosen(calls: list[Call], window: Window, user: str | None = None) -> list[Call]:
    return [
        c
        for c in calls
        if window.start <= c.started_at < window.end and (user is None or c.user == user)
    ]


def nusd(cost: Decimal | None) -> int:
    return 0 if cost is None else int(cost * 10**9)


# Edges that cut hours (raw calls there) and whole hours and days between (the user rollups).
WINDOW = Window(
    start=T0 + timedelta(hours=5, minutes=17, seconds=3),
    end=T0 + timedelta(days=2, hours=20, minutes=41),
)


def test_top_users_are_the_raw_calls_figures(store_target: str) -> None:
    calls = history(1)
    store = written(store_target, calls)
    try:
        top = Queries(store.engine).top(WINDOW, Filters(), "user", limit=10)
        inside = chosen(calls, WINDOW)
        users = sorted({c.user for c in inside}, key=lambda u: u or "")
        spent = {u: sum(nusd(c.cost_usd) for c in inside if c.user == u) for u in users}
        counted = {u: sum(1 for c in inside if c.user == u) for u in users}
        assert {item.value: item.cost_usd for item in top} == {
            u: Decimal(spent[u]) / 10**9 for u in users
        }
        assert {item.value: item.calls for item in top} == counted
        assert [item.cost_usd for item in top] == sorted((i.cost_usd for i in top), reverse=True)
        with store.engine.connect() as connection:
            rolled = connection.execute(
                sa.select(
                    schema.user_rollups.c.granularity, sa.func.sum(schema.user_rollups.c.calls)
                ).group_by(schema.user_rollups.c.granularity)
            ).all()
        assert sorted(rolled) == [(3600, len(calls)), (86400, len(calls))]
    finally:
        store.close()


def test_one_users_report_by_model_is_the_raw_calls_figures(store_target: str) -> None:
    calls = history(2)
    rng = random.Random(3)
    scores = [Score(call_id=c.id, name="relevance", value=rng.randrange(9) / 8) for c in calls[::4]]
    store = written(store_target, calls, scores)
    try:
        report = Queries(store.engine).report(WINDOW, Filters(user="bob"), ["model"])
        mine = chosen(calls, WINDOW, "bob")
        assert report.summary.percentiles == "sketch"  # whole hours and days were rolled up
        assert report.summary.calls == len(mine)
        assert report.summary.total_cost_usd == Decimal(sum(nusd(c.cost_usd) for c in mine)) / 10**9
        assert report.summary.input_tokens == sum(c.input_tokens for c in mine)
        latencies = np.array([c.latency_ms for c in mine])
        for q, got in ((0.5, report.summary.latency_p50_ms), (0.99, report.summary.latency_p99_ms)):
            assert got == pytest.approx(np.quantile(latencies, q, method="inverted_cdf"), rel=0.01)
        scored = {s.call_id: s.value for s in scores}
        for row in report.breakdown:
            members = [c for c in mine if c.model == row.group["model"]]
            assert row.calls == len(members)
            assert row.total_cost_usd == Decimal(sum(nusd(c.cost_usd) for c in members)) / 10**9
            values = [scored[c.id] for c in members if c.id in scored]
            assert row.quality["relevance"] == pytest.approx(float(np.mean(values)), rel=1e-12)
        assert {row.group["model"] for row in report.breakdown} == {c.model for c in mine}
    finally:
        store.close()


def test_calls_without_a_user_are_a_group_of_their_own(store_target: str) -> None:
    calls = history(4, 200)
    store = written(store_target, calls)
    try:
        got = Queries(store.engine).summary(WINDOW, Filters(user=""))
        assert got.calls == len([c for c in chosen(calls, WINDOW) if c.user is None])
    finally:
        store.close()


def test_the_upgrade_to_schema_8_fills_the_user_rollups_and_says_how_far_it_is(
    store_target: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls = history(5, 300)
    store = written(store_target, calls)
    with store.engine.begin() as connection:
        for table in ("user_score_rollups", "user_rollups"):
            connection.execute(sa.text(f"DROP TABLE {table}"))
        connection.execute(
            schema.meta.update().where(schema.meta.c.key == "schema_version").values(value="7")
        )
    store.close()
    with caplog.at_level(logging.WARNING, logger="aivitals.store"):
        upgraded = SqlStore.open(store_target)
    try:
        assert "upgrading to schema 8: user rollups filled for 3 of 3 days of calls" in caplog.text
        top = Queries(upgraded.engine).top(WINDOW, Filters(), "user")
        inside = chosen(calls, WINDOW)
        assert {item.value: item.calls for item in top} == {
            u: sum(1 for c in inside if c.user == u) for u in {c.user for c in inside}
        }
    finally:
        upgraded.close()


def test_the_backfill_visits_only_the_days_that_hold_calls(store_target: str) -> None:
    # An older writer stored a call that started in the year 318,857 (tests/test_read_defence.py):
    # a walk over every day from the first call to the last would take 116 million steps.
    calls = history(6, 120)
    store = written(store_target, calls)
    heard: list[tuple[int, int]] = []
    try:
        with store.engine.begin() as connection:
            connection.execute(
                sa.update(schema.calls)
                .where(schema.calls.c.id == calls[0].id)
                .values(started_ms=10**16)
            )
            user_rollup.backfill(connection, lambda done, total: heard.append((done, total)))
            stored = connection.execute(
                sa.select(sa.func.sum(schema.user_rollups.c.calls)).where(
                    schema.user_rollups.c.granularity == 86400,
                    schema.user_rollups.c.bucket_start < 10**12,
                )
            ).scalar()
    finally:
        store.close()
    days = {c.started_at.date() for c in calls[1:]}
    assert heard == [(i, len(days) + 1) for i in range(1, len(days) + 2)]
    assert stored == len(calls) - 1


def test_the_batch_sketches_are_sketch_of_each_groups_values() -> None:
    # Groups of every shape: empty ones, values below MIN_VALUE and zero, NaNs (skipped).
    rng = np.random.default_rng(11)
    groups: list[list[float]] = []
    for _ in range(300):
        size = int(rng.integers(0, 6))
        values = list(rng.lognormal(4.0, 3.0, size))
        if rng.random() < 0.3:
            values += [0.0, MIN_VALUE / 2, MIN_VALUE]
        groups.append(values)
    groups += [[], [float("nan")], [1.0, float("nan")]]
    flat = np.array([v for group in groups for v in group], np.float64)
    starts = np.cumsum([0] + [len(group) for group in groups[:-1]])
    expected = [Sketch.of([v for v in group if not math.isnan(v)]).to_bytes() for group in groups]
    assert group_blobs(flat, starts) == expected
    # A few groups take a Sketch.of each; the one numpy pass gives the same bytes for them too.
    for first in range(0, len(groups) - 4, 7):
        few = groups[first : first + 4]
        few_flat = np.array([v for group in few for v in group], np.float64)
        edges = np.cumsum([0] + [len(group) for group in few[:-1]])
        assert group_blobs(few_flat, edges) == expected[first : first + 4]
        assert _grouped_at_once(few_flat, edges) == expected[first : first + 4]


def test_the_stored_user_rollups_are_each_buckets_calls(store_target: str) -> None:
    # Many users, batches of 50: most rows are merged into stored ones by later batches.
    rng = random.Random(12)
    calls = []
    for _ in range(1500):
        latency = rng.choice([0.0, 0.0004, 250.0 + rng.lognormvariate(6.0, 0.6)])
        calls.append(
            make_call(
                started_at=T0 + timedelta(seconds=rng.uniform(0, 2 * 86400)),
                user=rng.choice([f"u{i}" for i in range(40)] + [None]),
                model=rng.choice(MODELS),
                latency_ms=latency,
                ttft_ms=rng.choice([None, 0.0, latency / 2, latency]),
                input_tokens=rng.randrange(1, 5000),
                output_tokens=rng.randrange(0, 900),
                cost_usd=rng.choice([None, Decimal(rng.randrange(1, 10**7)) / 10**9]),
            )
        )
    store = written(store_target, calls)
    try:
        with store.engine.connect() as connection:
            stored = connection.execute(sa.select(schema.user_rollups)).mappings().all()
    finally:
        store.close()
    buckets: dict[tuple[object, ...], list[Call]] = {}
    for call in calls:
        start = int(call.started_at.timestamp())
        for granularity in (3600, 86400):
            key = (granularity, start - start % granularity, call.user or "", call.model)
            buckets.setdefault(key, []).append(call)
    assert len(stored) == len(buckets)
    for row in stored:
        members = buckets[(row["granularity"], row["bucket_start"], row["user"], row["model"])]
        assert row["calls"] == len(members)
        assert row["cost_nusd"] == sum(nusd(c.cost_usd) for c in members)
        assert row["unpriced"] == sum(c.cost_usd is None for c in members)
        assert row["ttft_count"] == sum(c.ttft_ms is not None for c in members)
        assert row["latency_sum_ms"] == pytest.approx(sum(c.latency_ms for c in members))
        assert row["latency_sketch"] == Sketch.of([c.latency_ms for c in members]).to_bytes()
        ttfts = [c.ttft_ms for c in members if c.ttft_ms is not None]
        assert row["ttft_sketch"] == Sketch.of(ttfts).to_bytes()


def _batch_rows_by_hand(calls: list[Call], granularities: tuple[int, ...]) -> dict[Any, Any]:
    """Each (granularity, bucket, user, model) of ``calls``: what its row must hold, summed
    here a member at a time in call order (Python floats, Python integers)."""
    groups: dict[tuple[Any, ...], list[Call]] = {}
    for call in calls:
        start = int(call.started_at.timestamp() * 1000) // 1000
        for granularity in granularities:
            key = (granularity, start - start % granularity, call.user or "", call.model)
            groups.setdefault(key, []).append(call)
    expected = {}
    for key, members in groups.items():
        latency = ttft = speed = 0.0
        speeds = 0
        for c in members:
            latency += c.latency_ms
            ttft += c.ttft_ms if c.ttft_ms is not None else 0.0
            # Speeds past the bound (a generation too short to time) are left out.
            tokens_per_s = c.output_tokens_per_second
            if tokens_per_s is not None and tokens_per_s <= bounds.MAX_TOKENS_PER_SECOND:
                speed += tokens_per_s
                speeds += 1
        ttfts = [c.ttft_ms for c in members if c.ttft_ms is not None]
        expected[key] = (
            len(members),
            sum(nusd(c.cost_usd) for c in members),
            sum(c.input_tokens for c in members),
            sum(c.status == "error" for c in members),
            latency.hex(),
            len(ttfts),
            ttft.hex(),
            speeds,
            speed.hex(),
            Sketch.of([c.latency_ms for c in members]).to_bytes(),
            Sketch.of(ttfts).to_bytes(),
        )
    return expected


def _as_checked(rows: list[dict[str, Any]]) -> dict[Any, Any]:
    return {
        (row["granularity"], row["bucket_start"], row["user"], row["model"]): (
            row["calls"],
            row["cost_nusd"],
            row["input_tokens"],
            row["errors"],
            float(row["latency_sum_ms"]).hex(),  # an empty sum is 0 (int) one by one
            row["ttft_count"],
            float(row["ttft_sum_ms"]).hex(),  # an empty sum is 0 (int) one by one
            row["speed_count"],
            float(row["speed_sum"]).hex(),  # an empty sum is 0 (int) one by one
            row["latency_sketch"],
            row["ttft_sketch"],
        )
        for row in rows
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batchs_user_rows_are_its_calls_summed_in_order_to_the_bit(seed: int) -> None:
    # Groups from one call to a few hundred (one user and model), users absent, TTFTs and
    # speeds absent, over hours and days.
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(rng.choice([3, 60, 400]))] + [None]
    calls = []
    for _ in range(rng.choice([700, 1000])):
        latency = rng.choice([0.0, 0.1, 0.7, 250.0 + rng.lognormvariate(6.0, 0.6)])
        failed = rng.random() < 0.2
        calls.append(
            make_call(
                started_at=T0 + timedelta(seconds=rng.uniform(0, 2 * 86400)),
                user="heavy" if rng.random() < 0.3 else rng.choice(users),
                model=rng.choice(MODELS),
                status="error" if failed else "ok",
                error_type="rate_limit" if failed else None,
                latency_ms=latency,
                ttft_ms=rng.choice([None, 0.0, latency / 3, rng.uniform(0.0, latency)]),
                input_tokens=rng.randrange(0, 5000),
                output_tokens=rng.choice([0, rng.randrange(1, 900)]),
                cost_usd=rng.choice([None, Decimal(rng.randrange(1, 10**7)) / 10**9]),
            )
        )
    figures = call_figures(calls)
    kind = user_rollup.USERS
    expected = _batch_rows_by_hand(calls, kind.granularities)
    assert _as_checked(user_rollup.user_rows(calls, figures=figures, kind=kind)) == expected
    assert _as_checked(user_rollup.user_rows([], figures=[])) == {}
