"""``aivitals report``'s cache section and guardrails line, in tables and in --json, over a store
written through the ingest API; figures from the posted bodies (tests/test_cache_impact.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aivitals.store.sql import SqlStore
from tests.support.server_app import NOW, serve_app
from tests.test_cache_impact import LEVEL_NAMES, cache_history, expected, post

runner = CliRunner()
# The command's window ends at the real now, after `NOW`: from a day before `NOW`, it holds
# exactly the calls `expected` keeps.
SINCE = (NOW - timedelta(hours=24)).isoformat()


def written(path: Path, bodies: list[dict[str, Any]]) -> str:
    with serve_app(SqlStore.open(path)) as served:
        post(served, bodies)
    return str(path)


@pytest.fixture(scope="module")
def bodies() -> list[dict[str, Any]]:
    return cache_history(600, seed=11)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, bodies: list[dict[str, Any]]) -> Iterator[str]:
    yield written(tmp_path_factory.mktemp("cache-report") / "calls.db", bodies)


def report(*args: str) -> str:
    from aivitals.cli import app

    result = runner.invoke(app, ["report", "--since", SINCE, *args], terminal_width=200)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_the_json_carries_every_level_and_the_guardrails(db: str, bodies: list[Any]) -> None:
    document = json.loads(report("--db", db, "--json"))
    want = expected(bodies)
    cache = document["cache"]
    assert cache["calls"] == want["calls"] == document["summary"]["calls"]
    for level in cache["levels"]:
        figures = want["levels"][level["level"]]
        assert level["calls"] == figures["calls"]
        assert Decimal(str(level["saved_usd"])) == figures["saved_usd"]
        assert level["latency_p95_ms"] == (
            pytest.approx(figures["latency_p95_ms"]) if figures["latency_p95_ms"] else None
        )
    assert [level["level"] for level in cache["levels"]] == LEVEL_NAMES
    counted = {(g["guardrail"], g["action"]): g["calls"] for g in cache["guardrails"]}
    assert counted == dict(want["actions"])


def test_the_tables_show_the_cache_section_and_the_guardrails_line(
    db: str, bodies: list[Any]
) -> None:
    output = report("--db", db)
    want = expected(bodies)
    hits = want["levels"]["exact"]["calls"] + want["levels"]["semantic"]["calls"]
    ratio = hits / (hits + want["levels"]["miss"]["calls"])
    assert f"Response cache: hit ratio {ratio:.1%}" in output
    assert "time avoided is estimated" in output
    semantic = next(line for line in output.splitlines() if line.strip().startswith("│ semantic"))
    figures = want["levels"]["semantic"]
    cells = [cell.strip() for cell in semantic.strip("│ ").split("│")]
    assert cells[1] == f"{figures['calls']:,}" and cells[2] == f"{figures['share']:.1%}"
    assert cells[6] == f"{figures['latency_p50_ms']:,.0f}"
    line = next(line for line in output.splitlines() if line.startswith("guardrails acted on"))
    assert f"guardrails acted on {want['guarded']:,} calls" in line
    top = max(want["actions"].items(), key=lambda item: item[1])
    assert f"{top[0][0]} {top[0][1]} {top[1]:,}" in line
    assert f"{want['blocks']:,} calls blocked (content_filter)" in line


def test_without_hits_or_guardrails_neither_is_shown(tmp_path: Path) -> None:
    plain = [
        {
            "provider": "openai",
            "model": "m-a",
            "latency_ms": 120.0,
            "input_tokens": 10,
            "output_tokens": 5,
            "started_at": (NOW - timedelta(minutes=i)).isoformat(),
        }
        for i in range(5)
    ]
    output = report("--db", written(tmp_path / "plain.db", plain))
    assert "5 calls" in output
    assert "Response cache" not in output and "guardrails acted" not in output
