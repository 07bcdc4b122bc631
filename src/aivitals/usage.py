"""Token usage from provider responses, normalised to one convention.

Providers disagree on what "input tokens" means, and that disagreement is the most common cost bug
in this field:

- OpenAI's ``prompt_tokens`` (and the Responses API's ``input_tokens``) *include* the cached tokens
  reported in ``prompt_tokens_details.cached_tokens``; ``completion_tokens`` includes reasoning.
- Anthropic's ``input_tokens`` *excludes* ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens``; the three add up to the real input.

`TokenUsage` always holds the total input (OpenTelemetry's ``gen_ai.usage.input_tokens`` convention):

>>> usage_from_anthropic({"input_tokens": 50, "cache_read_input_tokens": 1000,
...                       "cache_creation_input_tokens": 200, "output_tokens": 30})
TokenUsage(input_tokens=1250, output_tokens=30, cached_input_tokens=1000, cache_write_tokens=200, reasoning_tokens=0, cache_write_1h_tokens=0, server_tool_uses={})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

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


def usage_from_anthropic(usage: Any) -> TokenUsage:
    """Anthropic Messages API usage (object or dict): cached tokens are added to the input total."""
    uncached = _int(_get(usage, "input_tokens"))
    read = _int(_get(usage, "cache_read_input_tokens"))
    write = _int(_get(usage, "cache_creation_input_tokens"))
    return TokenUsage(
        input_tokens=uncached + read + write,
        output_tokens=_int(_get(usage, "output_tokens")),
        cached_input_tokens=read,
        cache_write_tokens=write,
    )


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
