"""The read commands and the demo, through the real CLI against real SQLite stores."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.model import Call, Score
from aivitals.store.sql import SqlStore

runner = CliRunner()
NOW = datetime.now(UTC)


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def db(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "calls.db")
    store = SqlStore.open(path)
    calls = [
        Call(
            provider="openai",
            model="gpt-4o" if i % 2 else "gpt-4o-mini",
            latency_ms=100.0 + i,
            input_tokens=1000,
            output_tokens=100,
            cost_usd=Decimal("0.001"),
            price_source="test",
            feature="search" if i < 6 else "chat",
            team="growth",
            user=f"u{i % 3}",
            started_at=NOW - timedelta(minutes=10, seconds=i),
            status="error" if i == 9 else "ok",
            error_type="rate_limit" if i == 9 else None,
        )
        for i in range(10)
    ]
    store.write(calls, [Score(call_id=calls[0].id, name="relevance", value=0.5)])
    store.close()
    yield path


def test_report_json_has_the_figures(db: str) -> None:
    code, out = invoke("report", "--db", db, "--since", "1h", "--json")
    assert code == 0, out
    document = json.loads(out)
    assert document["summary"]["calls"] == 10
    assert Decimal(str(document["summary"]["total_cost_usd"])) == Decimal("0.010")
    assert {row["group"]["model"] for row in document["breakdown"]} == {"gpt-4o", "gpt-4o-mini"}


def test_report_table_and_filters(db: str) -> None:
    code, out = invoke(
        "report", "--db", db, "--since", "1h", "--by", "feature,team", "--where", "team=growth"
    )
    assert code == 0, out
    assert "search" in out and "chat" in out


def test_report_csv(db: str) -> None:
    code, out = invoke("report", "--db", db, "--since", "1h", "--by", "user", "--csv")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert len(lines) == 4  # header and three users
    assert "group.user" in lines[0]


def test_calls_newest_first_with_scores(db: str) -> None:
    code, out = invoke("calls", "--db", db, "--since", "1h", "--json")
    assert code == 0, out
    page = json.loads(out)
    assert len(page) == 10
    started = [item["call"]["started_at"] for item in page]
    assert started == sorted(started, reverse=True)
    assert any(item["scores"] for item in page)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export(db: str, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"out.{fmt}"
    code, out = invoke(
        "export",
        "--db",
        db,
        "--since",
        "1h",
        "--format",
        fmt,
        "-o",
        str(target),
        "--where",
        "feature=search",
    )
    assert code == 0, out
    if fmt == "jsonl":
        rows = [json.loads(line) for line in target.read_text().splitlines()]
        assert len(rows) == 6 and rows[0]["cost_usd"] == "0.001"
    elif fmt == "csv":
        assert len(target.read_text().strip().splitlines()) == 7
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(target)
        assert table.num_rows == 6 and "model" in table.column_names


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--by", "colour"], "colour"),
        (["report", "--since", "3 parsecs"], "3 parsecs"),
        (["report", "--where", "planet=mars"], "planet"),
        (["report", "--where", "team"], "team"),
        (["calls", "--json", "--csv"], "one at a time"),
        (["export", "--format", "xlsx"], "xlsx"),
    ],
)
def test_bad_input_is_one_line_exit_2(db: str, args: list[str], message: str) -> None:
    code, out = invoke(*args, "--db", db)
    assert code == 2, out
    assert message in out
    assert "Traceback" not in out


def test_missing_corrupted_and_foreign_files(tmp_path: Path) -> None:
    code, out = invoke("report", "--db", str(tmp_path / "nope.db"))
    assert code == 2 and "no store" in out
    corrupted = tmp_path / "corrupted.db"
    corrupted.write_text("this is not a database, it is a shopping list\n" * 100)
    code, out = invoke("report", "--db", str(corrupted))
    assert code == 2 and "Traceback" not in out and "not" in out
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("create table invoices (id integer primary key)")
    code, out = invoke("report", "--db", str(foreign))
    assert code == 2 and "not an aivitals store" in out


def test_demo_stores_its_calls_and_is_deterministic(tmp_path: Path) -> None:
    seen = []
    for run in ("a", "b"):
        path = str(tmp_path / f"{run}.db")
        # --history none: every call inside the error-rate rule's 5 minutes, as worked out below.
        code, out = invoke(
            "demo", "--calls", "20", "--seed", "3", "--history", "none", "--db", path
        )
        assert code == 0, out
        assert "By model" in out and path in out
        with sqlite3.connect(path) as connection:
            rows = connection.execute(
                "select model, input_tokens, cached_input_tokens, output_tokens, cost_usd, error_type"
                " from calls order by model, input_tokens, output_tokens"
            ).fetchall()
        assert len(rows) == 20
        seen.append(rows)
        # The alert section follows from the stored errors: the error-rate rule fires for each
        # error type above 5% of the calls, worked out here from the rows themselves.
        types = [row[5] for row in rows if row[5] is not None]
        above = sorted({t for t in types if types.count(t) / len(rows) > 0.05})
        for error_type in above:
            assert f"ErrorRateHigh (error_type={error_type})" in out
        if not above:
            assert "No default alert rule fires" in out
        assert f"aivitals serve --db {path}" in " ".join(out.split())
    assert seen[0] == seen[1]
