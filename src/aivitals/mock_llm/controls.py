"""Per-request ``X-Mock-*`` headers: they override `MockConfig` for the one request carrying them.

>>> read_controls([(b"x-mock-completion-tokens", b"50"), (b"x-mock-error", b"rate_limit")])
Controls(latency_ms=None, ttft_ms=None, prompt_tokens=None, completion_tokens=50, cached_tokens=None, reasoning_tokens=None, finish_reason=None, error='rate_limit', cache_write_tokens=None, cache_write_1h_tokens=None, web_search_requests=None, service_tier=None, answer=None, tool_call=None)
>>> read_controls([(b"x-mock-prompt-tokens", b"many")])
Traceback (most recent call last):
...
aivitals.mock_llm.controls.ControlError: X-Mock-Prompt-Tokens must be a whole number >= 0, got 'many'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args
from urllib.parse import unquote

from aivitals.mock_llm.answers import ANSWER_KINDS, ANSWERS
from aivitals.mock_llm.config import ERROR_KINDS, ErrorKind

FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "function_call", "refusal"]
"""OpenAI's finish reasons, plus ``refusal``; each API reports them in its own words (Anthropic's
``stop_reason``, the Responses API's status), see docs/mock-llm.md."""
FINISH_REASONS: tuple[FinishReason, ...] = get_args(FinishReason)
_MAX_TIER_CHARS = 32

_PREFIX = b"x-mock-"
_MAX_TOKEN_DIGITS = 9


class ControlError(ValueError):
    """An ``X-Mock-*`` header the mock cannot follow; the message names it and says what works."""


@dataclass(frozen=True, slots=True)
class Controls:
    """What the headers asked for; ``None`` leaves the decision to the config and the dice."""

    latency_ms: float | None = None
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    finish_reason: FinishReason | None = None
    error: ErrorKind | None = None
    cache_write_tokens: int | None = None
    """Prompt tokens written to the cache, both lifetimes; part of the prompt."""
    cache_write_1h_tokens: int | None = None
    """The part of the cache writes with a 1-hour lifetime (Anthropic's ``ephemeral_1h``)."""
    web_search_requests: int | None = None
    service_tier: str | None = None
    """The tier to report, instead of the one the request's ``service_tier`` implies."""
    answer: str | None = None
    """The answer's text instead of the filler (``X-Mock-Answer`` by kind, ``X-Mock-Text``)."""
    tool_call: str | None = None
    """Answer with a call to this tool, its arguments being the answer's text."""


NO_CONTROLS = Controls()


def _milliseconds(header: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ControlError(f"{header} must be a number of milliseconds >= 0, got {raw!r}")
    return value


def _tokens(header: str, raw: str) -> int:
    # isascii: "²".isdigit() is true; the length cap keeps int() fast and the numbers sane.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_TOKEN_DIGITS:
        raise ControlError(f"{header} must be a whole number >= 0, got {raw!r}")
    return int(raw)


def _finish_reason(header: str, raw: str) -> FinishReason:
    for reason in FINISH_REASONS:
        if raw == reason:
            return reason
    raise ControlError(f"{header} must be one of {', '.join(FINISH_REASONS)}; got {raw!r}")


def _tier(header: str, raw: str) -> str:
    if not (raw.isascii() and raw.replace("_", "").isalnum()) or len(raw) > _MAX_TIER_CHARS:
        raise ControlError(
            f"{header} must be a tier name of up to {_MAX_TIER_CHARS} letters, digits or "
            f"underscores, got {raw!r}"
        )
    return raw


def _answer(header: str, raw: str) -> str:
    for kind in ANSWER_KINDS:
        if raw == kind:
            return ANSWERS[kind]
    raise ControlError(f"{header} must be one of {', '.join(ANSWER_KINDS)}; got {raw!r}")


def _text(header: str, raw: str) -> str:
    # Headers are Latin-1 on the wire: any language's text comes percent-encoded UTF-8.
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise ControlError(f"{header} must be percent-encoded UTF-8, got {raw!r}") from None


def _tool(header: str, raw: str) -> str:
    if not (raw.isascii() and raw.replace("_", "").replace("-", "").isalnum()) or len(raw) > 64:
        raise ControlError(
            f"{header} must be a tool name of up to 64 letters, digits, '_' or '-', got {raw!r}"
        )
    return raw


def _error(header: str, raw: str) -> ErrorKind:
    for kind in ERROR_KINDS:
        if raw == kind:
            return kind
    raise ControlError(f"{header} must be one of {', '.join(ERROR_KINDS)}; got {raw!r}")


# Lower-case raw name (ASGI lower-cases header names) -> display name, Controls field, parser.
_HEADERS: dict[bytes, tuple[str, str, Callable[[str, str], Any]]] = {
    b"x-mock-latency-ms": ("X-Mock-Latency-Ms", "latency_ms", _milliseconds),
    b"x-mock-ttft-ms": ("X-Mock-TTFT-Ms", "ttft_ms", _milliseconds),
    b"x-mock-prompt-tokens": ("X-Mock-Prompt-Tokens", "prompt_tokens", _tokens),
    b"x-mock-completion-tokens": ("X-Mock-Completion-Tokens", "completion_tokens", _tokens),
    b"x-mock-cached-tokens": ("X-Mock-Cached-Tokens", "cached_tokens", _tokens),
    b"x-mock-reasoning-tokens": ("X-Mock-Reasoning-Tokens", "reasoning_tokens", _tokens),
    b"x-mock-finish-reason": ("X-Mock-Finish-Reason", "finish_reason", _finish_reason),
    b"x-mock-error": ("X-Mock-Error", "error", _error),
    b"x-mock-cache-write-tokens": ("X-Mock-Cache-Write-Tokens", "cache_write_tokens", _tokens),
    b"x-mock-cache-write-1h-tokens": (
        "X-Mock-Cache-Write-1h-Tokens",
        "cache_write_1h_tokens",
        _tokens,
    ),
    b"x-mock-web-search-requests": ("X-Mock-Web-Search-Requests", "web_search_requests", _tokens),
    b"x-mock-service-tier": ("X-Mock-Service-Tier", "service_tier", _tier),
    b"x-mock-answer": ("X-Mock-Answer", "answer", _answer),
    b"x-mock-text": ("X-Mock-Text", "answer", _text),
    b"x-mock-tool-call": ("X-Mock-Tool-Call", "tool_call", _tool),
}
HEADER_NAMES: tuple[str, ...] = tuple(display for display, _, _ in _HEADERS.values())


def read_controls(raw_headers: Iterable[tuple[bytes, bytes]]) -> Controls:
    """Parse the ``X-Mock-*`` headers of an ASGI scope; raise `ControlError` on any bad one.

    Both halves of a pair must agree when both are given: cached reads and writes are part of the
    prompt, 1-hour writes part of the writes, reasoning tokens part of the completion, and the
    first chunk cannot come after the last.
    """
    values: dict[str, Any] | None = None
    for name, raw in raw_headers:
        if not name.startswith(_PREFIX):
            continue
        known = _HEADERS.get(name)
        if known is None:
            raise ControlError(
                f"unknown control header {name.decode('latin-1')!r}; "
                f"known: {', '.join(HEADER_NAMES)}"
            )
        display, field, parse = known
        if values is None:
            values = {}
        values[field] = parse(display, raw.decode("latin-1").strip())
    if values is None:
        return NO_CONTROLS
    controls = replace(NO_CONTROLS, **values)
    _check_pairs(controls)
    return controls


def _check_pairs(controls: Controls) -> None:
    cached = controls.cached_tokens
    writes = controls.cache_write_tokens
    if writes is None:
        writes = controls.cache_write_1h_tokens
    pairs = (
        (
            "X-Mock-Cached-Tokens",
            cached,
            "X-Mock-Prompt-Tokens",
            controls.prompt_tokens,
        ),
        (
            "X-Mock-Cached-Tokens + X-Mock-Cache-Write-Tokens",
            None if cached is None and writes is None else (cached or 0) + (writes or 0),
            "X-Mock-Prompt-Tokens",
            controls.prompt_tokens,
        ),
        (
            "X-Mock-Cache-Write-1h-Tokens",
            controls.cache_write_1h_tokens,
            "X-Mock-Cache-Write-Tokens",
            controls.cache_write_tokens,
        ),
        (
            "X-Mock-Reasoning-Tokens",
            controls.reasoning_tokens,
            "X-Mock-Completion-Tokens",
            controls.completion_tokens,
        ),
        ("X-Mock-TTFT-Ms", controls.ttft_ms, "X-Mock-Latency-Ms", controls.latency_ms),
    )
    for part_name, part, whole_name, whole in pairs:
        if part is not None and whole is not None and part > whole:
            raise ControlError(f"{part_name} ({part:g}) must not exceed {whole_name} ({whole:g})")
