"""The layout's rules, as tests: data flows one way, and the core imports no source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "aivitals"


def imports_of(folder: Path) -> list[tuple[str, str]]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((str(path.relative_to(SRC)), node.module))
            elif isinstance(node, ast.Import):
                found.extend((str(path.relative_to(SRC)), alias.name) for alias in node.names)
    return found


@pytest.mark.parametrize("folder", ["gateway", "server", "sinks", "store", "query", "alerts"])
def test_sources_and_sinks_do_not_import_the_sdk(folder: str) -> None:
    # The SDK is one source among others: the gateway and the server build their calls,
    # attribution and runtime from the core, never through the SDK's process-wide handle.
    reaching = [
        (path, module)
        for path, module in imports_of(SRC / folder)
        if module == "aivitals.sdk" or module.startswith("aivitals.sdk.")
    ]
    assert reaching == []
