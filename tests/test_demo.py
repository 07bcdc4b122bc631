"""`aivitals demo` through the real CLI: a day of history, the commands it prints, its mistakes."""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aivitals.cli import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def stored(path: Path) -> tuple[list[datetime], list[tuple[datetime, datetime]]]:
    """The calls' start times, and each score's (call start, score time), from the file."""
    with sqlite3.connect(path) as connection:
        starts = [
            datetime.fromtimestamp(ms / 1000, UTC)
            for (ms,) in connection.execute("select started_ms from calls")
        ]
        pairs = [
            (datetime.fromtimestamp(a / 1000, UTC), datetime.fromtimestamp(b / 1000, UTC))
            for a, b in connection.execute(
                "select c.started_ms, s.created_ms from scores s join calls c on c.id = s.call_id"
            )
        ]
    return starts, pairs


def test_by_default_the_calls_are_dated_over_the_past_day_with_their_scores(
    tmp_path: Path,
) -> None:
    path = tmp_path / "demo.db"
    before = datetime.now(UTC)
    code, out = invoke("demo", "--calls", "30", "--db", str(path))
    after = datetime.now(UTC)
    assert code == 0, out
    starts, scored = stored(path)
    assert len(starts) == 30
    assert all(after - timedelta(hours=24) < t <= after for t in starts)
    # Spread over the day, not sent within the minute: the first is a 30th of the day in.
    assert max(starts) - min(starts) > timedelta(hours=20)
    assert max(starts) >= before
    # A score comes after its call, as it did when it was sent, and moved with it.
    assert scored and all(
        timedelta(0) <= score - call < timedelta(minutes=1) for call, score in scored
    )
    flat = " ".join(out.split())
    assert "--since 24h" in flat and "--since 1h" not in flat
    assert "dated back over --history 24h" in flat
    assert "30 calls" in flat


def test_history_none_keeps_the_times_the_calls_were_sent(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    before = datetime.now(UTC)
    code, out = invoke("demo", "--calls", "12", "--history", "none", "--db", str(path))
    assert code == 0, out
    starts, _ = stored(path)
    assert len(starts) == 12
    assert all(before - timedelta(seconds=1) <= t <= datetime.now(UTC) for t in starts)
    assert "--since 1h" in " ".join(out.split())


@pytest.mark.parametrize("history", ["yesterday", "0h", "9999w"])
def test_a_history_it_cannot_read_is_one_line_and_nothing_runs(
    tmp_path: Path, history: str
) -> None:
    path = tmp_path / "demo.db"
    code, out = invoke("demo", "--calls", "5", "--history", history, "--db", str(path))
    assert code == 2
    assert out.startswith("error: --history:") and len(out.strip().splitlines()) == 1
    assert not path.exists()


def test_a_second_run_into_the_same_store_says_the_figures_count_the_first(
    tmp_path: Path,
) -> None:
    path = tmp_path / "demo.db"
    assert invoke("demo", "--calls", "10", "--db", str(path))[0] == 0
    code, out = invoke("demo", "--calls", "10", "--db", str(path))
    assert code == 0, out
    flat = " ".join(out.split())
    assert "already held 10 calls of earlier runs" in flat
    assert "20 calls" in flat


def test_without_the_openai_client_the_demo_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As after `pip install aivitals` without the openai extra: importing openai fails.
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.delitem(sys.modules, "aivitals.demo.run", raising=False)
    code, out = invoke("demo", "--calls", "5", "--db", str(tmp_path / "demo.db"))
    assert code == 2
    assert "pip install 'aivitals[openai]'" in out and "Traceback" not in out


def test_the_commands_name_the_aivitals_that_ran_when_the_path_finds_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aivitals.demo.run import program

    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "aivitals"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (bin_dir / "activate").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/aivitals", "demo"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert program() == ".venv/bin/aivitals"
    # Activated: the PATH finds this very program, so its plain name works.
    monkeypatch.setenv("PATH", str(bin_dir))
    assert program() == "aivitals"
