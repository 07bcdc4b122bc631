"""One structured JSON line per call (and per score), for log pipelines.

Each line is an event with the fields of the `Call` (there is no prompt or response content in a
`Call` unless capture is opted into, and this sink never writes it). Money is written as a JSON
number for the tools that read these lines; the store keeps the exact decimal.

>>> import io
>>> from datetime import UTC, datetime
>>> out = io.StringIO()
>>> sink = JsonLogSink(stream=out)
>>> sink.write_calls([Call(id="c1", provider="openai", model="gpt-4o-mini", latency_ms=12.5,
...                        started_at=datetime(2026, 1, 1, tzinfo=UTC))])
>>> out.getvalue()[:61]
'{"event":"llm.call","provider":"openai","model":"gpt-4o-mini"'

An item that cannot be written as JSON (text that is not valid Unicode, such as a lone surrogate
in a tag; the record refuses it, so only an item built around it can hold one) is left out,
logged and counted (`lost`: ``aivitals_lost_items_total{sink="log", reason="unencodable"}``);
the rest of its batch is written.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import msgspec

from aivitals.model import Call, Score

logger = logging.getLogger("aivitals.sinks")


def _encoder() -> msgspec.json.Encoder:
    return msgspec.json.Encoder(decimal_format="number")


class JsonLogSink:
    """A batch sink writing JSON lines to a stream, a file, or a stdlib ``logging`` logger.

    Give exactly one of ``stream``, ``path`` (appended to) or ``logger``; with none, stderr.
    Fields that are empty (None, 0 tokens, no tags) are left out to keep lines short.
    """

    name = "log"

    def __init__(
        self,
        *,
        stream: IO[str] | None = None,
        path: str | Path | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if sum(target is not None for target in (stream, path, logger)) > 1:
            raise ValueError("give one of stream, path or logger")
        self._owned: IO[str] | None = None
        if path is not None:
            self._owned = open(path, "a", encoding="utf-8")  # noqa: SIM115  # closed in close()
        self._stream = self._owned or stream or (None if logger else sys.stderr)
        self._logger = logger
        self._encode = _encoder().encode
        self._lock = threading.Lock()
        self._unencodable = 0

    def write_calls(self, calls: Sequence[Call]) -> None:
        self._emit(self._lines("llm.call", calls))

    def write_scores(self, scores: Sequence[Score]) -> None:
        self._emit(self._lines("llm.score", scores))

    def buffered(self) -> Mapping[str, int]:
        """Nothing waits here: each batch is written as it comes."""
        return {}

    def lost(self) -> Mapping[str, int]:
        """Items left out because they cannot be written as JSON."""
        with self._lock:
            return {"unencodable": self._unencodable}

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()

    def _lines(self, event: str, items: Sequence[Call | Score]) -> list[str]:
        lines: list[str] = []
        refused: list[str] = []
        for item in items:
            try:
                lines.append(self._line(event, item))
            except (UnicodeEncodeError, TypeError, ValueError, OverflowError) as exc:
                # One item msgspec cannot encode must not cost the whole batch.
                refused.append(f"{getattr(item, 'id', '?')!r} ({type(exc).__name__})")
        if refused:
            with self._lock:
                self._unencodable += len(refused)
            logger.warning(
                "log sink: left out %d %s events that cannot be written as JSON: %s",
                len(refused),
                event,
                ", ".join(refused[:5]),
            )
        return lines

    def _line(self, event: str, item: Call | Score) -> str:
        fields: dict[str, Any] = {"event": event}
        for name in item.__struct_fields__:
            value = getattr(item, name)
            if value is None or value == {} or (value == 0 and name.endswith("_tokens")):
                continue
            fields[name] = value
        return self._encode(fields).decode()

    def _emit(self, lines: list[str]) -> None:
        if self._logger is not None:
            for line in lines:
                self._logger.info(line)
            return
        assert self._stream is not None  # set whenever there is no logger
        if not lines:
            return
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()
