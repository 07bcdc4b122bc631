"""Stored calls made whole again for the evaluators and the judge: `aivitals evaluate`.

Content capture keeps a call's messages, answer text and tool calls (redacted); the `Call`
keeps its finish reason. From both, `restored_content` rebuilds the `CallContent` the quality
stage would have seen, minus what neither keeps: the provider's own ``refusal`` field (the
phrase list still reads the text), the request's ``response_format`` and schemas (so
``json_valid`` can judge tool-call arguments only), and the unredacted text (so ``pii_leak``
would judge the placeholders: it is never run by default).

>>> from aivitals.model import Call
>>> from aivitals.query.content import StoredContent
>>> call = Call(provider="openai", model="gpt-4o-mini", latency_ms=1.0, finish_reason="length")
>>> restored_content(call, StoredContent(output_text="Par")).finish_reason
'length'
>>> first = rescore_id("0192f0c4-0000-7000-8000-000000000000", "refusal", "evaluator")
>>> first == rescore_id("0192f0c4-0000-7000-8000-000000000000", "refusal", "evaluator"), len(first)
(True, 36)
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import msgspec

from aivitals.content import CallContent
from aivitals.model import Call, Score
from aivitals.query.content import StoredContent
from aivitals.recorder import Recorder

STORED_CONTENT_EVALUATORS = ("empty", "truncated", "refusal", "json_valid")
"""The built-ins that can still be judged on stored content (``pii_leak`` cannot: redacted)."""

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://aivitals.dev/re-evaluate")


def restored_content(call: Call, stored: StoredContent) -> CallContent:
    """The `CallContent` of a stored call, from its captured content and its finish reason."""
    return CallContent(
        messages=stored.messages,
        output_text=stored.output_text,
        tool_calls=stored.tool_calls,
        finish_reason=call.finish_reason,
    )


def rescore_id(call_id: str, name: str, source: str) -> str:
    """The id of the score ``name`` from ``source`` that re-evaluating ``call_id`` writes: the
    same on every run, so the store (which keeps the first of an id) never holds it twice."""
    return str(uuid.uuid5(_NAMESPACE, f"{call_id}\x1f{name}\x1f{source}\x1fre-evaluate"))


class ScoreCollector(Recorder):
    """A recorder that keeps the scores handed to `record_score` (the judge's), under lasting
    ids, for `take` to return, so the command commits them durably itself; calls (the judge's
    own requests) go to the sinks as usual."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._taken_lock = threading.Lock()
        self._taken: list[Score] = []

    def record_score(self, score: Score) -> Score:
        score = msgspec.structs.replace(
            score, id=rescore_id(score.call_id, score.name, score.source)
        )
        with self._taken_lock:
            self._taken.append(score)
        return score

    def take(self) -> list[Score]:
        """The scores kept since the last take."""
        with self._taken_lock:
            taken, self._taken = self._taken, []
        return taken
