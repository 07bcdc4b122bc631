"""The ``empty`` and ``truncated`` evaluators: what the answer's shape alone says.

Every built-in evaluator is a function of the call and its content returning 1.0 (the thing
happened: the answer is empty, cut, a refusal, leaks data; for ``json_valid``: the JSON is
valid), 0.0, or None when it does not apply (a failed call has no answer to judge).

>>> from aivitals.content import CallContent
>>> from aivitals.model import Call
>>> call = Call(provider="openai", model="gpt-4o-mini", latency_ms=1.0, finish_reason="length")
>>> empty(call, CallContent(output_text="  ")), truncated(call, CallContent(output_text="Par"))
(1.0, 1.0)
"""

from __future__ import annotations

import unicodedata

from aivitals.content import CallContent
from aivitals.model import Call

TEXT_OPERATIONS = frozenset({"chat", "text_completion"})
"""Operations whose answer is text (an embedding has none to evaluate)."""


def answered(call: Call) -> bool:
    """Whether the call ended with an answer the evaluators can judge."""
    return call.status == "ok" and call.operation in TEXT_OPERATIONS


def empty(call: Call, content: CallContent) -> float | None:
    """1.0 when the answer has no text and no tool call. Text of whitespace and invisible
    characters only (zero-width spaces, byte-order marks) counts as none."""
    if not answered(call):
        return None
    if content.tool_calls:
        return 0.0
    return 0.0 if _visible(content.output_text or "") else 1.0


def _visible(text: str) -> bool:
    # Format characters (Unicode category Cf: U+200B, U+2060, U+FEFF...) print nothing.
    return any(not c.isspace() and unicodedata.category(c) != "Cf" for c in text)


def truncated(call: Call, content: CallContent) -> float | None:
    """1.0 when the answer stopped at a length limit (``length``; Anthropic's ``max_tokens``
    arrives as ``length`` through `aivitals.finish`)."""
    if not answered(call):
        return None
    reason = content.finish_reason or call.finish_reason
    return 1.0 if reason == "length" else 0.0
