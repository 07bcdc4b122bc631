"""`aivitals compare`, through the real command line against a real SQLite store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats
from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.store.sql import SqlStore
from tests.test_compare import write_versions

runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("compare-cli") / "calls.db")
    store = SqlStore.open(path)
    try:
        # The command reads the week before the real now: half an hour's margin at its start.
        write_versions(store, now=datetime.now(UTC) + timedelta(minutes=30))
    finally:
        store.close()
    yield path


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _json(*args: str) -> dict[str, Any]:
    code, output = invoke("compare", *args, "--json")
    assert code == 0, output
    document: dict[str, Any] = json.loads(output)
    return document


def _latencies(db: str, version: str) -> np.ndarray[Any, Any]:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as connection:
            found = connection.execute(
                sa.text("SELECT latency_ms FROM calls WHERE prompt_version = :v"), {"v": version}
            ).scalars()
            return np.array(list(found), dtype=float)
    finally:
        engine.dispose()


def test_json_has_both_sides_every_measure_and_the_regressions(db: str) -> None:
    document = _json("v1", "v2", "--db", db)
    assert set(document) == {"window", "filters", "comparison"}
    found = document["comparison"]
    assert (found["by"], found["a"]["value"], found["b"]["value"]) == ("prompt_version", "v1", "v2")
    assert (found["a"]["calls"], found["b"]["calls"]) == (400, 380)
    measures = {m["name"]: m for m in found["measures"]}
    assert list(measures) == [
        "latency_p50_ms",
        "latency_p95_ms",
        "error_rate",
        "refusal_rate",
        "cost_per_call_usd",
        "input_tokens_per_call",
        "output_tokens_per_call",
        "score.relevance",
    ]
    assert {"latency_p50_ms", "error_rate", "refusal_rate", "score.relevance"} <= set(
        found["regressions"]
    )
    p50 = measures["latency_p50_ms"]
    a, b = _latencies(db, "v1"), _latencies(db, "v2")
    assert p50["p_value"] == pytest.approx(stats.mannwhitneyu(b, a).pvalue, rel=1e-12)
    assert p50["difference"] == pytest.approx(
        np.quantile(b, 0.5, method="inverted_cdf") - np.quantile(a, 0.5, method="inverted_cdf")
    )
    for measure in measures.values():
        assert set(measure) >= {
            "a",
            "b",
            "difference",
            "relative",
            "ci_low",
            "ci_high",
            "p_value",
            "p_adjusted",
            "significant",
            "verdict",
            "test",
        }


def test_without_a_and_b_it_picks_the_two_most_frequent(db: str) -> None:
    found = _json("--db", db)["comparison"]
    assert found["chosen"] is True
    assert (found["a"]["value"], found["b"]["value"]) == ("v1", "v3")
    assert found["regressions"] == []


def test_where_narrows_both_sides(db: str) -> None:
    found = _json("v1", "v2", "--where", "status=ok", "--db", db)["comparison"]
    measures = {m["name"]: m for m in found["measures"]}
    assert (measures["error_rate"]["a"], measures["error_rate"]["b"]) == (0.0, 0.0)
    assert found["a"]["calls"] < 400


def test_the_table_calls_out_regressions_and_too_little_data(db: str) -> None:
    code, output = invoke("compare", "v1", "v2", "--db", db)
    assert code == 0, output
    assert "B v2 (380 calls) against A v1 (400 calls)" in output
    assert "regressions: latency p50 (ms), " in output
    code, output = invoke("compare", "v1", "v4", "--db", db)
    assert code == 0, output
    assert output.count("not enough data") >= 8
    assert "no regression" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["v1"], "error: B: give both A and B, or neither"),
        (["v1", "v1"], "error: B: A and B are both 'v1'"),
        (["--by", "colour"], "error: --by: unknown field 'colour'"),
        (
            ["v1", "v2", "--where", "prompt_version=v1"],
            "error: --where: prompt_version is the field",
        ),
        (["--by", "environment"], "error: --by: environment takes no value"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(db: str, args: list[str], message: str) -> None:
    code, output = invoke("compare", *args, "--db", db)
    assert code == 2
    assert output.startswith(message), output


def test_a_missing_store_says_how_to_make_one(tmp_path: Path) -> None:
    code, output = invoke("compare", "--db", str(tmp_path / "none.db"))
    assert code == 2 and "no store at" in output
