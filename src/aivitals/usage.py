"""Token usage from provider responses, normalised to one convention.

Providers disagree on what "input tokens" means, and that disagreement is the most common cost bug
in this field:

- OpenAI's ``prompt_tokens`` (and the Responses API's ``input_tokens``) *include* the cached tokens
  reported in ``prompt_tokens_details.cached_tokens``; ``completion_tokens`` includes reasoning.
- Anthropic's ``input_tokens`` *excludes* ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens``; the three add up to the real input. Cache writes are split by
  lifetime in ``cache_creation.ephemeral_5m_input_tokens`` and ``ephemeral_1h_input_tokens``
  (1-hour writes cost more); server-side tools are counted in ``server_tool_use``.

`TokenUsage` always holds the total input (OpenTelemetry's ``gen_ai.usage.input_tokens`` convention):

>>> usage = usage_from_anthropic({"input_tokens": 50, "cache_read_input_tokens": 1000,
...     "cache_creation_input_tokens": 200, "output_tokens": 30,
...     "cache_creation": {"ephemeral_5m_input_tokens": 50, "ephemeral_1h_input_tokens": 150},
...     "server_tool_use": {"web_search_requests": 2}})
>>> usage.input_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens, usage.server_tool_uses
(1250, 200, 150, {'web_search': 2})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from aivitals.bounds import MAX_TOOL_USES

TOOL_USE_KINDS: frozenset[str] = frozenset(
    {"web_search", "web_fetch", "code_execution", "file_search"}
)
"""The server-side tools a provider bills per use, as keys of ``TokenUsage.server_tool_uses``."""


class TokenUsage(msgspec.Struct, frozen=True):
    """Tokens of one call: ``input_tokens`` includes cached reads and writes; output includes reasoning.

    ``cache_write_1h_tokens`` is the part of ``cache_write_tokens`` written with a 1-hour lifetime
    (the rest are 5-minute writes); ``server_tool_uses`` counts server-side tool uses billed per
    use, by `TOOL_USE_KINDS` (empty when none).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    server_tool_uses: dict[str, int] = msgspec.field(default_factory=dict)


def _get(obj: Any, name: str) -> Any:
    """Read a field from an SDK model or a plain dict alike."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


def usage_from_openai(usage: Any) -> TokenUsage:
    """Chat Completions, legacy Completions, Embeddings or Responses API usage (object or dict)."""
    if _get(usage, "prompt_tokens") is not None:
        prompt = _int(_get(usage, "prompt_tokens"))
        completion = _int(_get(usage, "completion_tokens"))
        details = _get(usage, "prompt_tokens_details")
        reasoning = _int(_get(_get(usage, "completion_tokens_details"), "reasoning_tokens"))
    else:
        prompt = _int(_get(usage, "input_tokens"))
        completion = _int(_get(usage, "output_tokens"))
        details = _get(usage, "input_tokens_details")
        reasoning = _int(_get(_get(usage, "output_tokens_details"), "reasoning_tokens"))
    # Clamp so an inconsistent provider report cannot make the record invalid.
    cached = min(_int(_get(details, "cached_tokens")), prompt)
    written = min(_int(_get(details, "cache_write_tokens")), prompt - cached)
    return TokenUsage(
        input_tokens=prompt,
        output_tokens=completion,
        cached_input_tokens=cached,
        cache_write_tokens=written,
        reasoning_tokens=min(reasoning, completion),
    )


_ANTHROPIC_TOOLS = {
    "web_search_requests": "web_search",
    "web_fetch_requests": "web_fetch",
    "code_execution_requests": "code_execution",
}
"""``usage.server_tool_use`` fields (the SDK types name the first two; code execution is read when
the API reports it) to `TOOL_USE_KINDS`."""

_OPENAI_TOOL_ITEMS = {
    "web_search_call": "web_search",
    "file_search_call": "file_search",
    "code_interpreter_call": "code_execution",
}
"""Responses API output item types that are billed server-side tool calls."""


def usage_from_anthropic(usage: Any) -> TokenUsage:
    """Anthropic Messages API usage (object or dict): cached tokens are added to the input total.

    Works on a ``Message``'s ``usage`` and on a stream's ``message_delta`` usage alike. The
    total of cache writes is ``cache_creation_input_tokens``; without the lifetime split all of
    them are 5-minute writes (what ``cache_control`` writes unless told ``ttl: "1h"``).
    """
    uncached = _int(_get(usage, "input_tokens"))
    read = _int(_get(usage, "cache_read_input_tokens"))
    split = _get(usage, "cache_creation")
    short = _int(_get(split, "ephemeral_5m_input_tokens"))
    long = _int(_get(split, "ephemeral_1h_input_tokens"))
    reported = _get(usage, "cache_creation_input_tokens")
    write = _int(reported) if reported is not None else short + long
    output = _int(_get(usage, "output_tokens"))
    thinking = _int(_get(_get(usage, "output_tokens_details"), "thinking_tokens"))
    return TokenUsage(
        input_tokens=uncached + read + write,
        output_tokens=output,
        cached_input_tokens=read,
        cache_write_tokens=write,
        # Clamped: an inconsistent report must not make the record invalid.
        cache_write_1h_tokens=min(long, write),
        reasoning_tokens=min(thinking, output),
        server_tool_uses=_anthropic_tool_uses(_get(usage, "server_tool_use")),
    )


def _anthropic_tool_uses(reported: Any) -> dict[str, int]:
    if reported is None:
        return {}
    uses: dict[str, int] = {}
    for name, kind in _ANTHROPIC_TOOLS.items():
        count = _int(_get(reported, name))
        if count:
            uses[kind] = min(count, MAX_TOOL_USES)
    return uses


def tool_uses_from_openai_output(output_items: Any) -> dict[str, int]:
    """Server-side tool calls of an OpenAI Responses API answer, counted from ``response.output``.

    The Responses API bills its built-in tools per call but reports no count in ``usage``: each
    call is an output item (``web_search_call``, ``file_search_call``, ``code_interpreter_call``;
    a web search item whose action opens or searches a page is not a billed search). Items may be
    SDK objects or dicts; anything else in the list is ignored. Prefer
    `tool_uses_from_openai_response`, which also reads the billed count the API reports.

    >>> tool_uses_from_openai_output([{"type": "web_search_call"}, {"type": "message"},
    ...                               {"type": "web_search_call"}, {"type": "file_search_call"}])
    {'web_search': 2, 'file_search': 1}
    """
    uses: dict[str, int] = {}
    if output_items is None or isinstance(output_items, str | bytes | Mapping):
        return uses
    try:
        items = iter(output_items)
    except TypeError:
        return uses
    for item in items:
        item_type = _get(item, "type")
        kind = _OPENAI_TOOL_ITEMS.get(item_type) if isinstance(item_type, str) else None
        if kind == "web_search" and _get(_get(item, "action"), "type") not in (None, "search"):
            continue  # opening or searching a page already found is not a billed search
        if kind is not None and uses.get(kind, 0) < MAX_TOOL_USES:
            uses[kind] = uses.get(kind, 0) + 1
    return uses


def tool_uses_from_openai_response(response: Any) -> dict[str, int]:
    """Server-side tool calls of a Responses API answer (object or dict): the output items, and
    ``response.tool_usage.web_search.num_requests`` (the billed searches) when the API gives it.

    >>> tool_uses_from_openai_response({"output": [{"type": "web_search_call"}],
    ...                                 "tool_usage": {"web_search": {"num_requests": 3}}})
    {'web_search': 3}
    """
    uses = tool_uses_from_openai_output(_get(response, "output"))
    billed = _get(_get(_get(response, "tool_usage"), "web_search"), "num_requests")
    if type(billed) is int and billed >= 0:
        uses.pop("web_search", None)
        if billed:
            uses["web_search"] = min(billed, MAX_TOOL_USES)
    return uses


def usage_from_response(usage: Any, *, provider: str | None = None) -> TokenUsage:
    """Normalise any supported usage object; ``provider`` settles the Anthropic/OpenAI ambiguity.

    Without a provider, a usage that carries Anthropic's cache fields is read the Anthropic way.
    """
    if isinstance(usage, TokenUsage):
        return usage
    if provider == "anthropic" or (
        provider is None
        and _get(usage, "prompt_tokens") is None
        and (_has(usage, "cache_read_input_tokens") or _has(usage, "cache_creation_input_tokens"))
    ):
        return usage_from_anthropic(usage)
    return usage_from_openai(usage)


def _has(obj: Any, name: str) -> bool:
    if isinstance(obj, Mapping):
        return name in obj
    return hasattr(obj, name)
