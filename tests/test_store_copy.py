"""`aivitals store copy`: a history moves SQLite -> PostgreSQL -> SQLite whole, rollups included.

Real processes (the `aivitals` command) against a real PostgreSQL (tests/support/postgres.py).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.content import ContentMessage
from aivitals.model import Call, Outcome, Score
from aivitals.query import Queries, Window
from aivitals.store import schema
from aivitals.store.baselines import pin
from aivitals.store.contents import ContentRow, write_contents
from aivitals.store.copy import tables
from aivitals.store.rows import epoch_ms
from aivitals.store.sql import SqlStore

from .support.postgres import StoreTargets

AIVITALS = str(Path(sys.executable).with_name("aivitals"))
NOW = datetime.now(UTC).replace(microsecond=0)
RETAINED = timedelta(days=2)
"""Raw calls older than this are deleted from the source: only their rollups tell of them."""


def history(n: int, seed: int = 15) -> tuple[list[Call], list[Score], list[Outcome]]:
    rng = random.Random(seed)
    calls = []
    for _ in range(n):
        failed = rng.random() < 0.1
        calls.append(
            Call(
                provider="openai",
                model=rng.choice(["gpt-4o", "gpt-4o-mini", "o3"]),
                feature=rng.choice(["search", "chat", None]),
                team=rng.choice(["core", "growth"]),
                user=rng.choice(["ann", "bob", "cy"]),
                status="error" if failed else "ok",
                error_type="rate_limit" if failed else None,
                latency_ms=rng.uniform(500, 9000),
                ttft_ms=rng.choice([None, rng.uniform(10, 400)]),
                input_tokens=rng.randrange(0, 5000),
                output_tokens=rng.randrange(0, 800),
                cost_usd=rng.choice([None, Decimal(rng.randrange(1, 10**7)) / 10**9]),
                started_at=NOW - timedelta(seconds=rng.randrange(5 * 86400)),
                tags={"run": str(rng.randrange(3))},
            )
        )
    scores = [
        Score(call_id=call.id, name=rng.choice(["relevance", "tone"]), value=rng.random())
        for call in calls
        if rng.random() < 0.4
    ]
    outcomes = [
        Outcome.of(
            call.id, predicted=rng.choice(["spam", "ham"]), actual=rng.choice(["spam", "ham"])
        )
        for call in calls
        if rng.random() < 0.2
    ]
    return calls, scores, outcomes


def fill(target: str, n: int = 200) -> tuple[list[Call], list[Score]]:
    """A source store of ``n`` calls with scores, outcomes, contents and a baseline, its raw
    calls older than `RETAINED` deleted."""
    calls, scores, outcomes = history(n)
    store = SqlStore.open(target)
    try:
        for start in range(0, len(calls), 300):
            store.write(calls[start : start + 300], [], [])
        store.write([], scores, outcomes)
        write_contents(
            store,
            [
                ContentRow(
                    call_id=call.id,
                    started_at=call.started_at,
                    messages=(ContentMessage("user", f"question {i}"),),
                    output_text=f"answer {i} é ✓",
                )
                for i, call in enumerate(calls[:50])
            ],
        )
        pin(
            store.engine,
            "before-upgrade",
            epoch_ms(NOW - timedelta(days=4)),
            epoch_ms(NOW - timedelta(days=3)),
            now_ms=epoch_ms(NOW),
        )
        store.delete_calls_before(NOW - RETAINED)
    finally:
        store.close()
    return calls, scores


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """`aivitals store ARGS` as its own process."""
    return subprocess.run(
        [AIVITALS, "store", *args], capture_output=True, text=True, timeout=300, check=False
    )


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """`aivitals store ARGS` in this process (seconds faster than a process on a busy machine)."""
    result = CliRunner().invoke(app, ["store", *args])
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def contents_of(target: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every copied table, sorted, with bytes as bytes whatever the driver gives."""
    store = SqlStore.open(target)
    try:
        with store.engine.connect() as connection:
            found = {}
            for table in tables():
                rows = connection.execute(sa.select(table)).all()
                found[table.name] = sorted(
                    tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows
                )
            return found
    finally:
        store.close()


def summary_figures(target: str, window: Window) -> dict[str, Any]:
    store = SqlStore.open(target)
    try:
        found = Queries(store.engine).report(window, by=("model",))
    finally:
        store.close()
    return {
        "calls": found.summary.calls,
        "errors": found.summary.errors,
        "cost": found.summary.total_cost_usd,
        "tokens": found.summary.input_tokens + found.summary.output_tokens,
        "p99": found.summary.latency_p99_ms,
        "by_model": {
            row.group["model"]: (row.calls, row.total_cost_usd) for row in found.breakdown
        },
        "quality": found.summary.quality,
    }


def test_a_history_goes_to_postgresql_and_back_whole(
    tmp_path: Path, postgresql_db_url: str
) -> None:
    source = str(tmp_path / "aivitals.db")
    calls, scores = fill(source, 1200)

    there = run("copy", "--from", source, "--to", postgresql_db_url, "--batch-rows", "250")
    assert there.returncode == 0, there.stderr
    assert "calls: " in there.stderr and "rows" in there.stderr  # progress, on standard error
    assert "rollups" in there.stdout and "checked" in there.stdout

    back = str(tmp_path / "back" / "aivitals.db")
    again = run("copy", "--from", postgresql_db_url, "--to", back)
    assert again.returncode == 0, again.stderr

    original = contents_of(source)
    assert all(original[name] for name in original), "every table of the source holds rows"
    assert contents_of(postgresql_db_url) == original
    assert contents_of(back) == original

    # The whole five days: the first three exist only as rollups in every copy.
    window = Window(NOW - timedelta(days=6), NOW + timedelta(minutes=1))
    figures = [summary_figures(t, window) for t in (source, postgresql_db_url, back)]
    # Quality means are float sums each engine adds in its own row order: equal to rounding.
    qualities = [f.pop("quality") for f in figures]
    assert figures[0] == figures[1] == figures[2]
    for name in ("relevance", "tone"):
        expected = float(np.mean([s.value for s in scores if s.name == name]))
        assert [q[name] for q in qualities] == [pytest.approx(expected, rel=1e-12)] * 3
    assert figures[0]["calls"] == len(calls)
    assert figures[0]["errors"] == sum(c.status == "error" for c in calls)
    assert figures[0]["cost"] == sum(
        (c.cost_usd for c in calls if c.cost_usd is not None), Decimal(0)
    )
    assert figures[0]["tokens"] == sum(c.input_tokens + c.output_tokens for c in calls)
    for model in {c.model for c in calls}:
        mine = [c for c in calls if c.model == model]
        cost = sum((c.cost_usd for c in mine if c.cost_usd is not None), Decimal(0))
        assert figures[1]["by_model"][model] == (len(mine), cost)

    # The CLI report reads the same from both engines.
    reports = [
        subprocess.run(
            [AIVITALS, "report", "--db", t, "--since", "6d", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        for t in (source, postgresql_db_url)
    ]
    documents = [rounded(json.loads(r)) for r in reports]
    for document in documents:
        document.pop("window", None)  # the two ran a moment apart
    assert documents[0] == documents[1]


def rounded(value: Any) -> Any:
    """Floats to 12 significant digits (float sums differ in the last bit between engines)."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {key: rounded(v) for key, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def test_a_store_that_holds_rows_is_refused_unless_replace(
    tmp_path: Path, store_targets: StoreTargets
) -> None:
    source = str(tmp_path / "aivitals.db")
    fill(source)
    target = store_targets("target")
    assert invoke("copy", "--from", source, "--to", target).returncode == 0
    before = contents_of(target)

    refused = invoke("copy", "--from", source, "--to", target)
    assert refused.returncode == 2
    assert "is not empty" in refused.stderr and "--replace" in refused.stderr
    assert contents_of(target) == before

    replaced = invoke("copy", "--from", source, "--to", target, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert contents_of(target) == before  # replaced, not added twice


def test_a_copy_postgresql_refuses_part_way_leaves_the_target_empty(
    tmp_path: Path, postgresql_db_url: str
) -> None:
    source = str(tmp_path / "aivitals.db")
    fill(source)
    # SQLite keeps a NUL inside text; PostgreSQL refuses it. Written behind the store's back.
    engine = sa.create_engine(f"sqlite:///{source}")
    with engine.begin() as connection:
        connection.execute(
            schema.scores.update()
            .where(
                schema.scores.c.id == sa.select(sa.func.max(schema.scores.c.id)).scalar_subquery()
            )
            .values(name="tone\x00")
        )
    engine.dispose()

    failed = invoke("copy", "--from", source, "--to", postgresql_db_url)
    assert failed.returncode == 2
    assert "copying scores into" in failed.stderr and "NUL" in failed.stderr
    assert not any(contents_of(postgresql_db_url).values())


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--from", "missing.db", "--to", "b.db"), "--from: no store at missing.db"),
        (("--from", "a.db", "--to", "a.db"), "the same store"),
        (("--from", "a.db", "--to", "mysql://u@h/db"), "--to:"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    SqlStore.open(tmp_path / "a.db").close()
    done = subprocess.run(
        [AIVITALS, "store", "copy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
