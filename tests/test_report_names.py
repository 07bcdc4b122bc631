"""The report's words say what they count: one error, the response cache.

``1 errors`` and ``1 calls`` read wrong, and "cache hit ratio —" beside "13,312 cached" read as
prompt caching when it is the gateway's response cache. `aivitals report` and `aivitals demo`
draw the same tables, from one module below both (`aivitals.report_tables`).
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.model import Call
from aivitals.store.sql import SqlStore

SRC = Path(__file__).resolve().parents[1] / "src" / "aivitals"


def report(db: Path) -> str:
    result = CliRunner().invoke(app, ["report", "--db", str(db), "--since", "1h"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # the panel may wrap; compare words


def stored(db: Path, *calls: Call) -> Path:
    store = SqlStore.open(db)
    store.write(list(calls), [])
    store.close()
    return db


def a_call(**fields: object) -> Call:
    started = datetime.now(UTC) - timedelta(minutes=5)
    values: dict[str, object] = {"provider": "openai", "model": "gpt-4o", "latency_ms": 300.0}
    values.update(fields)
    return Call(started_at=started, **values)  # type: ignore[arg-type]


def test_one_error_one_call_and_the_response_cache_by_name(tmp_path: Path) -> None:
    text = report(stored(tmp_path / "a.db", a_call(status="error", error_type="timeout")))
    assert "1 call," in text and "1 error," in text
    assert "1 calls" not in text and "1 errors" not in text
    assert "response cache hit ratio" in text


def test_many_are_plural(tmp_path: Path) -> None:
    calls = [a_call(), a_call(), a_call(status="error", error_type="timeout")]
    calls.append(a_call(status="error", error_type="rate_limit"))
    text = report(stored(tmp_path / "a.db", *calls))
    assert "4 calls," in text and "2 errors," in text


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    return names | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }


def test_the_report_tables_live_below_the_cli_and_the_demo() -> None:
    demo = set().union(*(imported(p) for p in (SRC / "demo").glob("*.py")))
    assert not any(name.startswith("aivitals.cli") for name in demo), demo
    assert "aivitals.report_tables" in demo
    cli = set().union(*(imported(p) for p in (SRC / "cli").glob("*.py")))
    assert "aivitals.report_tables" in cli
    assert not any(
        name.startswith(("aivitals.cli", "aivitals.demo"))
        for name in imported(SRC / "report_tables.py")
    )
