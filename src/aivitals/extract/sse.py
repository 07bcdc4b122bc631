"""Server-sent events kept as the bytes a stream passed on, decoded later into their JSON
objects: the gateway keeps a stream's raw bytes (one list append per read) and parses them only
inside the content thunk, on the quality worker.

>>> events_of([b'event: x\\ndata: {"type": "a"}\\n\\ndata: [DONE]\\n\\n', b'data: {"b": 1}\\n\\n'])
[{'type': 'a'}, {'b': 1}]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

_decode = msgspec.json.Decoder().decode


def events_of(chunks: Iterable[bytes]) -> list[dict[str, Any]]:
    """The JSON objects of a stream's ``data:`` lines, in order; anything else is skipped."""
    found: list[dict[str, Any]] = []
    for event in b"".join(chunks).split(b"\n\n"):
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if not payload.startswith(b"{"):
                continue
            try:
                decoded = _decode(payload)
            except (msgspec.DecodeError, RecursionError):
                continue
            if isinstance(decoded, dict):
                found.append(decoded)
    return found
