"""Finish reasons in one vocabulary: OpenAI's, which the record, the metrics and reports use.

Anthropic names its stop reasons differently; the gateway and the SDK both map them here, so a
call's ``finish_reason`` means the same whichever API answered it:

>>> [finish_reason_from_anthropic(r) for r in ("end_turn", "max_tokens", "tool_use", "refusal")]
['stop', 'length', 'tool_calls', 'refusal']
>>> finish_reason_from_anthropic("pause_turn"), finish_reason_from_anthropic(None)
('pause_turn', None)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

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


# Responses API output items that hand the turn back to the application to run a tool.
_CLIENT_TOOL_CALLS = frozenset({"function_call", "custom_tool_call", "computer_call"})
_FROM_INCOMPLETE: dict[str, str] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}


def finish_reason_from_responses(
    status: object, incomplete_reason: object, output: Iterable[Any]
) -> str | None:
    """A Responses API answer's outcome as a finish reason: ``completed`` is ``stop``, or
    ``tool_calls`` when its output hands the application a tool call, ``refusal`` when the model
    refused; ``incomplete`` is ``length`` for ``max_output_tokens`` (or no reason),
    ``content_filter`` for that, another reason as sent; any other status (``failed``) has none.

    >>> finish_reason_from_responses("incomplete", "max_output_tokens", [])
    'length'
    >>> finish_reason_from_responses("completed", None, [{"type": "function_call"}])
    'tool_calls'
    """
    if status == "incomplete":
        if not isinstance(incomplete_reason, str):
            return "length"
        return _FROM_INCOMPLETE.get(incomplete_reason, incomplete_reason)
    if status != "completed":
        return None
    refused = False
    for item in output:
        kind = _field(item, "type")
        if kind in _CLIENT_TOOL_CALLS:
            return "tool_calls"
        if kind == "message":
            parts = _field(item, "content") or ()
            refused = refused or any(_field(part, "type") == "refusal" for part in parts)
    return "refusal" if refused else "stop"


def _field(obj: object, name: str) -> Any:
    """A field of an SDK object or a decoded JSON dict alike."""
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
