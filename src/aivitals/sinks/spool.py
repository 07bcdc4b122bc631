"""`Spool`: request bodies that could not be delivered yet, kept as files until the server is back.

One file is one request body, ready to send again as it is. Its name sorts by the time it was
written and carries what it holds::

    01741521600000000000-4242-000007-250.calls.json
    <wall time, ns>      <pid> <seq> <n> <kind>

Invariants, for every process that shares the directory:

- a file appears whole or not at all (written to a hidden temporary name, then renamed);
- a file is sent by one process at a time: the sender *claims* it by renaming it to
  ``<name>.claimed-<pid>`` (a rename succeeds for one process only), deletes it once the server
  has answered, and renames it back if the server could not be reached. A claim left by a
  process that died mid-send (or older than two minutes) is renamed back by `recover`, so the
  file is sent again: delivery is at least once;
- the directory stays under ``max_bytes``: to make room, the oldest unclaimed files go first.

>>> import tempfile, pathlib
>>> folder = tempfile.TemporaryDirectory()
>>> spool = Spool(pathlib.Path(folder.name))
>>> spool.put("calls", b'{"calls":[]}', count=0)
0
>>> [(entry.kind, entry.count) for entry in spool.entries()]
[('calls', 0)]
>>> folder.cleanup()
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["calls", "scores", "outcomes"]

_NAME = re.compile(r"^(\d{20})-(\d+)-(\d+)-(\d+)\.(calls|scores|outcomes)\.json$")
_CLAIMED = re.compile(r"^(.+\.json)\.claimed-(\d+)$")
_TEMP = re.compile(r"^\.tmp-(\d+)-")
_KINDS: Mapping[str, Kind] = {"calls": "calls", "scores": "scores", "outcomes": "outcomes"}
# A claim lasts one request; one this old was left by a process that hung or died.
_STALE_CLAIM_S = 120.0


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One unclaimed file: a request body of ``count`` calls or scores, ``size`` bytes."""

    path: Path
    kind: Kind
    count: int
    size: int


def default_spool_dir(endpoint: str, *, environ: Mapping[str, str] | None = None) -> Path:
    """``~/.cache/aivitals/spool/<hash of endpoint>``: one spool per server, shared by processes.

    >>> default_spool_dir("http://127.0.0.1:8000", environ={"XDG_CACHE_HOME": "/cache"}).parent.as_posix()
    '/cache/aivitals/spool'
    """
    env = os.environ if environ is None else environ
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:16]
    return Path(cache) / "aivitals" / "spool" / digest


class Spool:
    """A directory of pending request bodies, bounded by ``max_bytes``; see the module docstring.

    Thread-safe within a process; several processes may share the directory.
    """

    def __init__(self, directory: Path, *, max_bytes: int = 100 * 1024 * 1024) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_spool_bytes must be >= 1, got {max_bytes}")
        self.directory = directory
        self.max_bytes = max_bytes
        # The spool holds prompts' metadata (users, features, errors): owner-only.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = 0
        self._last_ns = 0

    def put(self, kind: Kind, body: bytes, *, count: int) -> int:
        """Write one body atomically; return how many items were dropped to keep the bound.

        The oldest files are dropped first. A body larger than the whole bound is itself
        dropped (and counted). Raises `OSError` when the file cannot be written.
        """
        if len(body) > self.max_bytes:
            return count
        dropped = self._make_room(len(body))
        pid = os.getpid()
        with self._lock:
            self._seq += 1
            # Names sort in the order this process wrote them, even if the wall clock steps back.
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            name = f"{self._last_ns:020d}-{pid}-{self._seq:06d}-{count}.{kind}.json"
            temp = self.directory / f".tmp-{pid}-{self._seq}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(body)
            os.replace(temp, self.directory / name)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        return dropped

    def entries(self) -> list[SpoolEntry]:
        """The unclaimed files, oldest first."""
        found: list[SpoolEntry] = []
        with os.scandir(self.directory) as scan:
            for item in scan:
                match = _NAME.match(item.name)
                if match is None:
                    continue
                with contextlib.suppress(FileNotFoundError):  # claimed meanwhile
                    size = item.stat().st_size
                    kind: Kind = _KINDS[match[5]]
                    found.append(SpoolEntry(Path(item.path), kind, int(match[4]), size))
        found.sort(key=lambda entry: entry.path.name)
        return found

    def file_count(self) -> int:
        """Files waiting, claimed or not."""
        with os.scandir(self.directory) as scan:
            return sum(1 for item in scan if _NAME.match(item.name) or _CLAIMED.match(item.name))

    def claim(self, entry: SpoolEntry) -> Path | None:
        """Take ``entry`` for sending; None when another process took it first."""
        claimed = entry.path.with_name(f"{entry.path.name}.claimed-{os.getpid()}")
        try:
            # The claim's age (for `recover`) starts now, not when the file was written.
            os.utime(entry.path)
            os.rename(entry.path, claimed)
        except FileNotFoundError:
            return None
        return claimed

    def release(self, claimed: Path, entry: SpoolEntry) -> None:
        """Put a claimed file back in line, under its first name (so in its first place)."""
        with contextlib.suppress(FileNotFoundError):
            os.rename(claimed, entry.path)

    def remove(self, claimed: Path) -> None:
        """Forget a claimed file: the server answered for it."""
        with contextlib.suppress(FileNotFoundError):
            claimed.unlink()

    def recover(self, *, stale_after_s: float = _STALE_CLAIM_S) -> int:
        """Release the claims and delete the temporary files that dead processes left behind.

        A claim is stale when its process is gone, or when it is older than ``stale_after_s``
        (a claim lasts one request; this also frees one left under a pid that a restarted
        container reuses). Returns how many files were released.
        """
        released = 0
        now = time.time()
        with os.scandir(self.directory) as scan:
            items = list(scan)
        for item in items:
            claim = _CLAIMED.match(item.name)
            temp = _TEMP.match(item.name)
            if claim is not None:
                pid = int(claim[2])
            elif temp is not None:
                pid = int(temp[1])
            else:
                continue
            try:
                age_s = now - item.stat().st_mtime
            except FileNotFoundError:
                continue
            if age_s <= stale_after_s and (pid == os.getpid() or _alive(pid)):
                continue
            with contextlib.suppress(FileNotFoundError):
                if claim is not None:
                    os.rename(item.path, self.directory / claim[1])
                    released += 1
                else:
                    os.unlink(item.path)
        return released

    def _make_room(self, incoming: int) -> int:
        entries = self.entries()
        total = sum(entry.size for entry in entries) + incoming
        dropped = 0
        for entry in entries:
            if total <= self.max_bytes:
                break
            with contextlib.suppress(FileNotFoundError):  # sent or dropped by another process
                entry.path.unlink()
                dropped += entry.count
            total -= entry.size
        return dropped


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # no cheap, safe probe there: stale claims are found by their age instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True
