"""Per-request ``X-Mock-*`` headers: they override `MockConfig` for the one request carrying them.

>>> read_controls([(b"x-mock-completion-tokens", b"50"), (b"x-mock-error", b"rate_limit")])
Controls(latency_ms=None, ttft_ms=None, prompt_tokens=None, completion_tokens=50, cached_tokens=None, reasoning_tokens=None, finish_reason=None, error='rate_limit')
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

from aivitals.mock_llm.config import ERROR_KINDS, ErrorKind

FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "function_call"]
FINISH_REASONS: tuple[FinishReason, ...] = get_args(FinishReason)

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
}
HEADER_NAMES: tuple[str, ...] = tuple(display for display, _, _ in _HEADERS.values())


def read_controls(raw_headers: Iterable[tuple[bytes, bytes]]) -> Controls:
    """Parse the ``X-Mock-*`` headers of an ASGI scope; raise `ControlError` on any bad one.

    Both halves of a pair must agree when both are given: cached tokens are part of the prompt,
    reasoning tokens part of the completion, and the first chunk cannot come after the last.
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
    pairs = (
        (
            "X-Mock-Cached-Tokens",
            controls.cached_tokens,
            "X-Mock-Prompt-Tokens",
            controls.prompt_tokens,
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
