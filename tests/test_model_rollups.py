"""Model rollups (schema 9): every answer read from them is the answer read from ``rollups``.

A store an older writer left (the out-of-range rows of the read-defence tests, planted in its
calls and rollups with SQL, and a rollup row whose sums are in range but whose sketch is not),
taken back to schema 8 and upgraded by opening it, on SQLite and a real PostgreSQL. Each answer
that reads the model rollups is then asked again with that route turned off (the rollups read
as before schema 9): the two must agree on every figure, ``skipped_rows`` included, and again
after the upgraded store takes new calls. The skipped counts are also checked against the rows
as planted.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from aivitals.query import Filters, Queries, Window
from aivitals.query import collect as collect_module
from aivitals.store import model_rollup, schema
from aivitals.store.rollup import rollup_rows
from aivitals.store.sketch import Sketch, merge_all
from aivitals.store.sql import SqlStore
from tests.support.helpers import make_call
from tests.support.server_app import NOW
from tests.test_read_defence import BAD, Bad, poison

GAMMA = (1 + 0.01) / (1 - 0.01)  # DDSketch's bins at 1% relative accuracy
SKETCH_BAD_AT = NOW - timedelta(minutes=40, seconds=10)
"""When the rollup row whose sketch alone is out of range was written."""
WINDOWS = {
    "last hour": (NOW - timedelta(hours=1), NOW),
    "cut edges": (NOW - timedelta(hours=26, seconds=17), NOW - timedelta(seconds=7)),
    "whole": (datetime(1, 1, 1, tzinfo=UTC), NOW + timedelta(days=1)),
}


def good_calls(seed: int) -> list[Any]:
    """Calls over two days before ``NOW``, several models and keys, so buckets hold many rows."""
    rng = random.Random(seed)
    latencies = [rng.uniform(50, 5000) for _ in range(400)]
    return [
        make_call(
            started_at=NOW - timedelta(seconds=rng.randrange(1, 2 * 86400)),
            latency_ms=latency,
            ttft_ms=rng.choice([None, latency * rng.uniform(0.1, 0.5)]),
            model=rng.choice(["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku"]),
            provider=rng.choice(["openai", "azure"]),
            feature=rng.choice(["search", "chat", None]),
            **rng.choice([{}, {}, {"status": "error", "error_type": "timeout"}]),
            input_tokens=rng.randrange(5000),
        )
        for latency in latencies
    ]


def plant_sketch_bad(store: SqlStore) -> None:
    """A rollup row of ten calls whose latency sum is in range but whose sketch's top bin
    (1e8 ms, 27.8 hours) is not, as an older writer folded it."""
    old = [make_call(model="old-sketch", latency_ms=100.0, started_at=SKETCH_BAD_AT)] * 10
    low, high = (math.ceil(math.log(v) / math.log(GAMMA)) for v in (100.0, 1e8))
    counts = [0] * (high - low + 1)
    counts[0], counts[-1] = 9, 1
    rows = rollup_rows(old)
    for row in rows:
        row["latency_sum_ms"] = 9 * 100.0 + 1e8
        row["latency_sketch"] = struct.pack("<iI", low, 0) + struct.pack(
            f"<{len(counts)}I", *counts
        )
    with store.engine.begin() as connection:
        connection.execute(schema.rollups.insert(), rows)


def back_to_schema_8(target: str) -> None:
    """Undo schema 9 (its one table) as the upgrade tests do, so opening the store upgrades it."""
    store = SqlStore.open(target)
    with store.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE model_rollups"))
        connection.execute(
            schema.meta.update().where(schema.meta.c.key == "schema_version").values(value="8")
        )
    store.close()


class Spy:
    """The rollup tables `collect` read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read: list[str] = []
        spy = self
        reader = collect_module._Reader

        class Recording(reader):  # type: ignore[misc,valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                spy.read.append(self.table.name)

        monkeypatch.setattr(collect_module, "_Reader", Recording)


def answers(queries: Queries, engine: sa.Engine) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Every answer the model rollups serve, by name."""
    for label, (start, end) in WINDOWS.items():
        window = Window(start=start, end=end)
        yield f"{label}: summary", partial(queries.summary, window)
        for by in (["model"], ["provider"], ["provider", "model"]):
            yield f"{label}: report by {by}", partial(queries.report, window, by=by)
        yield (
            f"{label}: report without quality",
            partial(queries.report, window, by=["model"], quality=False),
        )
        for where in (Filters(model="gpt-4o"), Filters(provider="openai", model="old-0")):
            yield f"{label}: summary {where.items()}", partial(queries.summary, window, where)
        if label != "whole":
            for step in ("minute", "hour", "day"):
                yield f"{label}: {step}s", partial(queries.timeseries, window, step=step)
            yield (
                f"{label}: hours by model",
                partial(queries.timeseries, window, step="hour", by="model"),
            )
        yield f"{label}: totals without percentiles", partial(totals, engine, window)


def totals(engine: sa.Engine, window: Window) -> dict[str, dict[str, Any]]:
    """`collect`'s totals by model without percentiles (what no public answer asks for alone),
    by model: its groups come in the order the engine returned the rows."""
    with engine.connect() as connection:
        found = collect_module.collect(
            connection, (window.start_ms, window.end_ms), Filters(), ("model",), percentiles=False
        )
    return {
        str(key[1]): {
            name: values[gid] for name, values in (*found.ints.items(), *found.floats.items())
        }
        for gid, key in enumerate(found.keys)
    }


def flat(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """The leaves of an answer (dataclasses, named tuples, lists, dicts, arrays), by path."""
    if is_dataclass(value) and not isinstance(value, type):
        for field in fields(value):
            yield from flat(getattr(value, field.name), f"{path}.{field.name}")
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        for name in value._fields:
            yield from flat(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from flat(value[key], f"{path}[{key}]")
    elif isinstance(value, list | tuple):
        yield (f"{path}#len", len(value))
        for i, item in enumerate(value):
            yield from flat(item, f"{path}[{i}]")
    elif isinstance(value, np.ndarray):
        yield from flat(value.tolist(), path)
    else:
        yield (path, value)


def assert_same(found: Any, expected: Any, what: str) -> None:
    left, right = list(flat(found)), list(flat(expected))
    assert [p for p, _ in left] == [p for p, _ in right], what
    for (path, a), (_, b) in zip(left, right, strict=True):
        if isinstance(a, float) and isinstance(b, float):
            # Float sums added in another order: equal to rounding.
            assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12), (
                what,
                path,
                a,
                b,
            )
        else:
            assert a == b, (what, path, a, b)


def compare(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Every answer by both routes; asserts they agree and that the first read model rollups.
    Returns the answers by name."""
    queries = Queries(store.engine)
    spy = Spy(monkeypatch)
    found = {}
    for name, ask in answers(queries, store.engine):
        spy.read.clear()
        found[name] = ask()
        assert "model_rollups" in spy.read, name
    with monkeypatch.context() as patched:
        patched.setattr(collect_module, "model_rolled", lambda *a, **k: False)
        for name, ask in answers(queries, store.engine):
            spy.read.clear()
            expected = ask()
            assert "model_rollups" not in spy.read, name
            assert_same(found[name], expected, name)
    return found


@pytest.fixture(params=BAD, ids=[bad.name for bad in BAD])
def bad(request: pytest.FixtureRequest) -> Bad:
    param: Bad = request.param
    return param


def test_answers_from_an_upgraded_store_equal_the_rollups_answers(
    store_target: str, bad: Bad, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlStore.open(store_target)
    store.write(good_calls(1), [])
    poison(store, NOW, bad)
    plant_sketch_bad(store)
    store.close()
    back_to_schema_8(store_target)

    upgraded = SqlStore.open(store_target)
    try:
        found = compare(upgraded, monkeypatch)
        # The counts as planted: two bad rows a granularity (when their sums are out of range)
        # and the one sketch, counted when percentiles are read.
        hour = found["last hour: summary"]
        assert hour.skipped_rows == bad.skipped + 1
        by_model = found["last hour: totals without percentiles"]
        assert sum(int(sums["skipped_rows"]) for sums in by_model.values()) == bad.skipped
        assert hour.calls == 1 + 10 + (2 if bad.summed else 0) + sum(
            1 for c in good_calls(1) if c.started_at >= NOW - timedelta(hours=1)
        )
        # A new call elsewhere: both routes still agree.
        upgraded.write([make_call(model="gpt-4o", started_at=NOW - timedelta(minutes=3))], [])
        assert compare(upgraded, monkeypatch)["last hour: summary"].calls == hour.calls + 1
        # New calls into the very rollup rows an older writer left out of range: ``rollups``
        # add them to the row, which stays out of range, so a read of them loses the new calls
        # with it; the model rollups fold them into rows of their own sums and count them,
        # while still counting the old row as skipped.
        upgraded.write(
            [
                make_call(model="old-0", started_at=NOW - timedelta(minutes=20, seconds=5)),
                make_call(model="old-sketch", started_at=SKETCH_BAD_AT),
            ],
            [],
        )
        queries = Queries(upgraded.engine)
        window = Window(start=NOW - timedelta(hours=1), end=NOW)
        summary = queries.summary(window)
        assert (summary.calls, summary.skipped_rows) == (hour.calls + 3, hour.skipped_rows)
        rows = {row.group["model"]: row for row in queries.breakdown(window, by=["model"])}
        assert rows["old-sketch"].calls == 11
        assert rows["old-sketch"].latency_p50_ms == pytest.approx(250.0, rel=0.01)
        assert rows["old-sketch"].skipped_rows == 1
        assert rows["old-0"].calls == (2 if bad.summed else 1)
    finally:
        upgraded.close()


def test_answers_that_read_fewer_sums_or_other_keys_stay_on_the_rollups(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlStore.open(tmp_path / "a.db")
    store.write(good_calls(2), [])
    queries = Queries(store.engine)
    window = Window(start=NOW - timedelta(days=3), end=NOW)
    spy = Spy(monkeypatch)
    asked: list[tuple[Callable[[], Any], str]] = [
        (lambda: queries.spend(window, step="hour"), "rollups"),  # the cost's check alone
        (lambda: queries.top(window, by="model"), "rollups"),
        (lambda: queries.breakdown(window, by=["feature"]), "rollups"),
        (lambda: queries.summary(window, Filters(status="ok")), "rollups"),
        (lambda: queries.summary(window, Filters(user="ann")), "user_rollups"),
        (lambda: queries.breakdown(window, by=["provider"]), "model_rollups"),
    ]
    for ask, table in asked:
        spy.read.clear()
        ask()
        assert spy.read == [table]
    store.close()


def test_the_writer_folds_what_the_upgrade_fills(store_target: str) -> None:
    store = SqlStore.open(store_target)
    calls = good_calls(3)
    for start in range(0, len(calls), 100):
        store.write(calls[start : start + 100], [])
    table = schema.model_rollups
    order = table.primary_key.columns
    with store.engine.connect() as connection:
        written = connection.execute(sa.select(table).order_by(*order)).all()
    with store.engine.begin() as connection:
        assert model_rollup.backfill(connection) == len(calls)
        filled = connection.execute(sa.select(table).order_by(*order)).all()
    store.close()
    # A model rollup row per minute, hour and day each model (with its provider) has calls.
    keys = {(c.provider, c.model) for c in calls}
    minutes = {(c.provider, c.model, int(c.started_at.timestamp()) // 60) for c in calls}
    assert len(written) == len(filled) > len(minutes) >= len(keys)
    floats = {c.name for c in table.columns if isinstance(c.type, sa.Float)}
    for new, old in zip(filled, written, strict=True):
        for column, a, b in zip(table.columns, new, old, strict=True):
            if column.name in floats:
                assert a == pytest.approx(b, rel=1e-12)
            else:
                assert bytes(a) == bytes(b) if isinstance(a, memoryview) else a == b
        assert (new.skipped_rows, new.skipped_sketches) == (0, 0)


def test_sketches_merged_at_once_are_sketches_merged_one_by_one() -> None:
    rng = np.random.default_rng(5)
    blobs: list[bytes] = []
    groups: list[int] = []
    for i in range(300):
        kind = i % 5
        if kind == 0:
            blobs.append(b"")  # reads as an empty sketch
        elif kind == 1:
            blobs.append(Sketch(zeros=int(rng.integers(1, 4))).to_bytes())
        else:
            values = rng.lognormal(5, 2, int(rng.integers(1, 40)))
            values[: int(rng.integers(0, 3))] = 0.0
            blobs.append(Sketch.of(np.minimum(values, 86_400_000.0)).to_bytes())
        groups.append(int(rng.integers(0, 40)))
    ids = np.asarray(groups, np.int64)
    merged = model_rollup.merged_blobs(ids, blobs, 42)  # groups 40 and 41 have none
    for group in range(42):
        expected = merge_all(b for b, g in zip(blobs, groups, strict=True) if g == group)
        assert merged[group] == expected.to_bytes(), group


def test_totals_without_ttft_leave_out_only_the_ttft_percentiles(tmp_path: Any) -> None:
    # A rollup row whose TTFT sketch alone is out of range (its sums in range): without TTFT
    # percentiles the row's latency sketch is still left out, and counted, as with them.
    store = SqlStore.open(tmp_path / "a.db")
    store.write(good_calls(4), [])
    old = [make_call(model="old-ttft", latency_ms=500.0, ttft_ms=100.0, started_at=SKETCH_BAD_AT)]
    low = math.ceil(math.log(1e8) / math.log(GAMMA))
    rows = rollup_rows(old)
    for row in rows:
        row["ttft_sketch"] = struct.pack("<iII", low, 0, 1)
    with store.engine.begin() as connection:
        connection.execute(schema.rollups.insert(), rows)
        model_rollup.backfill(connection)
    edges = [int((NOW - timedelta(hours=h)).timestamp() * 1000) for h in (3, 2, 1, 0)]
    with store.engine.connect() as connection:
        both = collect_module.collect(connection, edges, Filters(), ("model",))
        latency_only = collect_module.collect(connection, edges, Filters(), ("model",), ttft=False)
    store.close()
    assert latency_only.keys == both.keys
    assert_same(latency_only.ints, both.ints, "ints")
    assert_same(latency_only.floats, both.floats, "floats")
    assert_same(latency_only.latency, both.latency, "latency")
    assert np.isnan(latency_only.ttft).all()
    assert not np.isnan(both.ttft).all()
    assert int(latency_only.ints["skipped_rows"].sum()) == 1
