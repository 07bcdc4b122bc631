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


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time (all threads) that process ``pid`` and its live descendants
    (`serve --workers N`'s workers) have used so far, in seconds, from ``/proc``."""
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = int(fields[11]) + int(fields[12])
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return total / os.sysconf("SC_CLK_TCK")
