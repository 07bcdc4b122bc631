"""``aivitals serve`` for real: a subprocess on a free port, stopped with SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.query import Queries, parse_since
from aivitals.store.sql import SqlStore
from tests.support.server_app import call_json

AIVITALS = str(Path(sys.executable).with_name("aivitals"))


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``aivitals serve --port 0 ARGS`` and return it with the URL it announced."""
    process = subprocess.Popen(
        [AIVITALS, "serve", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    if "listening on" not in line:
        process.kill()
        rest = process.stderr.read()
        process.wait()
        process.stderr.close()
        pytest.fail(f"aivitals serve did not start: {line}{rest}")
    return process, line.rsplit(" ", 1)[-1].strip()


@pytest.mark.slow
def test_sigterm_finishes_and_stores_every_accepted_call(tmp_path: Path) -> None:
    db = tmp_path / "aivitals.db"
    process, url = start("--db", str(db))
    try:
        now = datetime.now(UTC).isoformat()
        ids: list[str] = []
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            for batch in range(3):
                calls = [
                    call_json(started_at=now, latency_ms=float(batch * 1000 + i))
                    for i in range(300)
                ]
                reply = client.post("/api/v1/calls", json={"calls": calls})
                assert reply.status_code == 202
                ids.extend(reply.json()["ids"])
            metrics = client.get("/metrics").text
            assert "aivitals_http_server_requests_total" in metrics
        # Each 202 came after its commit; SIGTERM must still stop cleanly (exit 0).
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    store = SqlStore.open(db)
    try:
        stored = Queries(store.engine).calls(parse_since("1h", now=datetime.now(UTC)), limit=10_000)
    finally:
        store.close()
    assert sorted(item.call.id for item in stored) == sorted(ids)
    assert len(ids) == 900


runner = CliRunner()


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port), "--db", str(tmp_path / "a.db")])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_serve_refuses_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"not a database " * 1000)
    result = runner.invoke(app, ["serve", "--port", "0", "--db", str(junk)])
    assert result.exit_code == 2
    assert "is not a SQLite database" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "x.db", "--no-db"], "--db and --no-db go one at a time"),
    ],
)
def test_serve_refuses_bad_options(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["serve", "--port", "0", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
