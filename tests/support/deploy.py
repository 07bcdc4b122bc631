"""What the deployment tests read: the deploy files, and the options ``aivitals serve --help`` lists.

No test here; test modules import from it.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .gateway_processes import AIVITALS

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
GATEWAY_CONFIG = DEPLOY / "aivitals" / "gateway.toml"
SERVE_PORT = "8700"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@cache
def help_options(*command: str) -> frozenset[str]:
    """The options the help of ``aivitals <command>`` lists, as a user would run it."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    done = subprocess.run(
        [AIVITALS, *command, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    # The options table's rows open with the option: "│ --port   <int range> ...".
    return frozenset(re.findall(r"^│ +(--[a-z0-9-]+)", done.stdout, flags=re.MULTILINE))


def flags(args: list[str]) -> dict[str, str | None]:
    """``--name value`` and ``--name=value`` pairs of an argument list (a lone flag: None)."""
    found: dict[str, str | None] = {}
    for index, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        name, equals, value = arg.partition("=")
        if equals:
            found[name] = value
        elif index + 1 < len(args) and not args[index + 1].startswith("--"):
            found[name] = args[index + 1]
        else:
            found[name] = None
    return found


def runnable_here(args: list[str], *, port: int, replace: dict[str, str]) -> list[str]:
    """``args`` with the host made 127.0.0.1, the port ``port``, and ``replace``'s flags' values
    swapped (a compose service name for a real local server)."""
    out = list(args)
    values = {"--host": "127.0.0.1", "--port": str(port), **replace}
    for index, arg in enumerate(out[:-1]):
        if arg in values:
            out[index + 1] = values[arg]
    return out
