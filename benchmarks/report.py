"""Shared by the benchmarks: describe the machine, and write a section of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def machine_line() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({model}){memory}, {platform.system()} {platform.release()}"


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the block between ``<!-- bench:NAME -->`` markers, or append one."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text}\n{end}"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    updated = (
        pattern.sub(lambda _: block, current)
        if pattern.search(current)
        else f"{current}\n{block}\n"
    )
    path.write_text(updated)


def _stats() -> dict[int, list[str]]:
    """Each live process's ``/proc/PID/stat`` fields after its name (state, parent, ...)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
    return stats


def process_tree(pid: int, stats: dict[int, list[str]] | None = None) -> list[int]:
    """``pid`` and its live descendants (`serve --workers N`'s workers, serve's store writer
    process), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for child, fields in (stats if stats is not None else _stats()).items():
        children.setdefault(int(fields[1]), []).append(child)
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time (all threads) that process ``pid`` and its live descendants
    have used so far, in seconds, from ``/proc``."""
    stats = _stats()
    ticks = sum(
        int(stats[at][11]) + int(stats[at][12]) for at in process_tree(pid, stats) if at in stats
    )
    return ticks / os.sysconf("SC_CLK_TCK")
