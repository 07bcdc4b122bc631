"""Every option's whole name shows in `--help` at 80 columns, run as a user runs it."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from aivitals.cli import app

AIVITALS = str(Path(sys.executable).parent / "aivitals")


def option_names(*path: str) -> list[str]:
    """The long option names of the command at ``path``, from the command tree itself."""
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]  # a group's sub-commands
    return [opt for param in command.params for opt in param.opts if opt.startswith("--")]


@pytest.mark.parametrize(
    "path",
    [
        ("mock-llm",),
        ("demo",),
        ("alerts", "check"),
        ("alerts", "export"),
        ("quality",),
        ("compare",),
        ("drift",),
        ("baseline", "pin"),
    ],
)
def test_help_at_80_columns_shows_every_option_whole(path: tuple[str, ...]) -> None:
    env = {**os.environ, "COLUMNS": "80", "TERMINAL_WIDTH": "80", "NO_COLOR": "1"}
    result = subprocess.run(
        [AIVITALS, *path, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout
    words = result.stdout.split()
    for name in option_names(*path):
        assert name in words, (name, result.stdout)
    # A paragraph wraps to the width: a line followed by more of its paragraph is nearly full
    # (before the fix, the docstring's own line breaks came through: "... with configurable").
    prose = lines[1 : next(i for i, line in enumerate(lines) if "─" in line)]
    for line, following in itertools.pairwise(prose):
        if line.strip() and following.strip():
            assert len(line.rstrip()) > 60, (line, following)
