"""The content of a proxied call (`CallContent`), as a thunk for the recorder's quality stage.

The proxy hands over only references, on the request's path: the request body it decoded
already, the answer it decoded already (a whole answer) or the bytes a stream passed on (one
list append per read, `ContentTap`). Decoding a stream's events and reading the text happen in
the thunk, on the quality worker, and only when something reads content
(`Recorder.wants_content`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from aivitals.content import CallContent
from aivitals.extract.chat import chat_content, chat_stream_content
from aivitals.extract.sse import events_of
from aivitals.gateway.dialect import Dialect
from aivitals.model import Call

Thunk = Callable[[], CallContent | None]

_decode = msgspec.json.Decoder().decode


def whole_content(
    dialect: Dialect | None, request: Mapping[str, Any], parsed: Mapping[str, Any], call: Call
) -> Thunk | None:
    """A whole answer's content; None for embeddings (no text to evaluate)."""
    if call.operation == "embeddings":
        return None
    reason = call.finish_reason
    if dialect is not None:
        return lambda: dialect.content(request, parsed, reason)
    return lambda: chat_content(request, parsed, finish_reason=reason)


def stream_content(
    dialect: Dialect | None, request: Mapping[str, Any], chunks: list[bytes], call: Call
) -> Thunk | None:
    """A streamed answer's content, from the bytes it passed on."""
    if call.operation == "embeddings":
        return None
    reason = call.finish_reason
    if dialect is not None:
        return lambda: dialect.stream_content(request, events_of(chunks), reason)
    return lambda: chat_stream_content(request, events_of(chunks), finish_reason=reason)


def replayed_content(
    dialect: Dialect | None,
    request: Mapping[str, Any],
    chunks: tuple[bytes, ...],
    stream: bool,
    call: Call,
) -> Thunk | None:
    """A cached answer served again is an answer the client read: its content, from the bytes."""
    if stream:
        return stream_content(dialect, request, list(chunks), call)

    def build() -> CallContent | None:
        parsed = _decode(chunks[0]) if chunks else None
        if not isinstance(parsed, dict):
            return None
        thunk = whole_content(dialect, request, parsed, call)
        return thunk() if thunk is not None else None

    return None if call.operation == "embeddings" else build
