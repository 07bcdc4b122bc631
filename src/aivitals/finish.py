"""Finish reasons in one vocabulary: OpenAI's, which the record, the metrics and reports use.

Anthropic names its stop reasons differently; the gateway and the SDK both map them here, so a
call's ``finish_reason`` means the same whichever API answered it:

>>> [finish_reason_from_anthropic(r) for r in ("end_turn", "max_tokens", "tool_use", "refusal")]
['stop', 'length', 'tool_calls', 'refusal']
>>> finish_reason_from_anthropic("pause_turn"), finish_reason_from_anthropic(None)
('pause_turn', None)
"""

from __future__ import annotations

_FROM_ANTHROPIC: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "refusal",
}


def finish_reason_from_anthropic(stop_reason: str | None) -> str | None:
    """OpenAI's name for an Anthropic ``stop_reason``; a reason with no counterpart (such as
    ``pause_turn`` or one added later) is kept as Anthropic sent it, None stays None."""
    if stop_reason is None:
        return None
    return _FROM_ANTHROPIC.get(stop_reason, stop_reason)
