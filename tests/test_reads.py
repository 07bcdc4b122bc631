"""Every read goes through the query layer: the front ends hold no SQL, and each renders a
`QueryError` from its data (the parameter and the problem), not by parsing the other's prose;
an export to a file that cannot be written is a one-line error."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.model import Call
from aivitals.query import QueryError, check_by, parse_since, parse_where
from aivitals.server import create_app
from aivitals.store.sql import SqlStore
from tests.support.server_app import build_runtime

SRC = Path(__file__).parent.parent / "src" / "aivitals"
AIVITALS = Path(sys.executable).parent / "aivitals"
NOW = datetime.now(UTC)


def modules_imported(folder: Path) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add((str(path.relative_to(SRC)), node.module))
            elif isinstance(node, ast.Import):
                found.update((str(path.relative_to(SRC)), alias.name) for alias in node.names)
    return found


@pytest.mark.parametrize("folder", ["server", "cli"])
def test_the_front_ends_import_no_sqlalchemy(folder: str) -> None:
    reaching = sorted(
        (path, module)
        for path, module in modules_imported(SRC / folder)
        if module == "sqlalchemy" or module.startswith("sqlalchemy.")
    )
    assert reaching == []


@pytest.mark.parametrize(
    ("ask", "parameter", "problem_starts"),
    [
        (lambda: parse_since("3 parsecs", now=NOW), "since", "cannot read '3 parsecs'"),
        (lambda: parse_where(["planet=mars"]), "where", "unknown field 'planet'"),
        (lambda: parse_where(["status=maybe"]), "where", "status has no value 'maybe'"),
        (lambda: check_by(["colour"]), "by", "unknown field 'colour'"),
    ],
)
def test_a_query_error_carries_its_parameter_and_problem(
    ask: Callable[[], object], parameter: str, problem_starts: str
) -> None:
    with pytest.raises(QueryError) as caught:
        ask()
    assert caught.value.parameter == parameter
    assert caught.value.problem.startswith(problem_starts)
    # The command line's rendering is its option, the problem after it.
    assert str(caught.value) == f"--{parameter}: {caught.value.problem}"


def test_a_problem_without_one_parameter_is_rendered_bare() -> None:
    error = QueryError(None, "the window ends before it starts: 10:00 < 11:00")
    assert error.parameter is None
    assert str(error) == "the window ends before it starts: 10:00 < 11:00"


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "calls.db")
    store = SqlStore.open(path)
    store.write(
        [
            Call(
                provider="openai",
                model="gpt-4o",
                latency_ms=323.4017810000296,
                input_tokens=10,
                output_tokens=5,
                cost_usd=Decimal("0.001"),
                price_source="test",
                started_at=NOW - timedelta(minutes=5),
            )
        ],
        [],
    )
    store.close()
    return path


def test_the_api_names_the_parameter_from_the_error_not_its_prose(db: str) -> None:
    store = SqlStore.open(db)
    runtime = build_runtime(store)
    try:
        client = TestClient(
            create_app(runtime=runtime, store=store, registry=CollectorRegistry(), now=lambda: NOW)
        )
        # /values lists fields rather than grouping by them: the same error, its own parameter.
        reply = client.get("/api/v1/values", params={"field": "colour"})
        assert reply.status_code == 422
        body = reply.json()
        assert body["error"] == (
            "field: unknown field 'colour'; use one of model, provider, feature, team, user, "
            "prompt_version, environment, status, error_type, operation, service_tier, quantization"
        )
        assert [f["field"] for f in body["fields"]] == ["query.field"]
        reply = client.get("/api/v1/summary", params={"since": "3 parsecs"})
        assert reply.status_code == 422
        assert reply.json()["error"].startswith("since: cannot read '3 parsecs'")
        assert [f["field"] for f in reply.json()["fields"]] == ["query.since"]
    finally:
        runtime.recorder.close()
        store.close()


def test_export_to_a_missing_folder_is_one_line_exit_2(db: str, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "dir" / "file.jsonl"
    done = subprocess.run(
        [str(AIVITALS), "export", "--db", db, "-o", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: --output: cannot write {target}: the folder {target.parent} does not exist"
    ]
    assert not target.parent.exists()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_to_a_folder_is_one_line_exit_2(db: str, tmp_path: Path, fmt: str) -> None:
    result = CliRunner().invoke(
        app, ["export", "--db", db, "--format", fmt, "-o", str(tmp_path)], terminal_width=400
    )
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == [
        f"error: --output: {tmp_path} is a folder; name a file, e.g. {tmp_path / 'calls.jsonl'}"
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_to_a_name_the_system_refuses_is_one_line_exit_2(
    db: str, tmp_path: Path, fmt: str
) -> None:
    target = tmp_path / ("x" * 300 + f".{fmt}")  # past every file system's 255 bytes a name
    result = CliRunner().invoke(
        app, ["export", "--db", db, "--format", fmt, "-o", str(target)], terminal_width=1000
    )
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: --output: cannot write {target}: File name too long"
    ]
