"""`MockConfig`: how the fake upstream behaves when a request carries no ``X-Mock-*`` header.

Field names are the CLI's flags with dashes (``latency_median_ms`` is ``--latency-median-ms``).
Every value is checked on construction and a bad one raises `ConfigError` naming the field:

>>> MockConfig(error_rate=1.5)
Traceback (most recent call last):
...
aivitals.config.ConfigError: error_rate: must be a probability in [0, 1], got 1.5
>>> MockConfig(time_scale=0).scaled_s(400.0)
0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from aivitals.config import ConfigError

ErrorKind = Literal[
    "rate_limit",
    "context_length",
    "content_filter",
    "server_error",
    "unavailable",
    "timeout",
    "malformed",
    "auth",
    "stream_cut",
]
"""An injected failure. See docs/mock-llm.md for the status, body and client exception of each."""

ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)

DEFAULT_ERROR_TYPES: tuple[ErrorKind, ...] = (
    "rate_limit",
    "context_length",
    "content_filter",
    "server_error",
    "unavailable",
    "timeout",
    "malformed",
)
"""What ``error_rate`` draws from unless told otherwise: ``auth`` and ``stream_cut`` are left out
because a bad key is not something a provider does at random, and a cut only applies to streams."""

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini",
    "gpt-4o",
    "o3-mini",
    "claude-sonnet-4-5",
    "text-embedding-3-small",
)


@dataclass(frozen=True, slots=True)
class MockConfig:
    """Defaults for every request; ``X-Mock-*`` headers override them one request at a time.

    >>> config = MockConfig(seed=7, time_scale=0)
    >>> config.latency_median_ms, config.strict_models, "gpt-4o" in config.models
    (400.0, False, True)
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    """Listed by ``GET /v1/models``; with ``strict_models``, the only ones accepted."""
    strict_models: bool = False
    """Answer 404 ``model_not_found`` for a model not in ``models`` (otherwise any name is served)."""
    latency_median_ms: float = 400.0
    """Median time to the whole answer (to the last chunk, for a stream); log-normally distributed."""
    latency_sigma: float = 0.5
    """Spread of the log-normal latency (and TTFT): 0 makes every request take the median."""
    ttft_median_ms: float = 150.0
    """Median time to the first chunk of a stream; never more than that request's latency."""
    completion_tokens_min: int = 20
    completion_tokens_max: int = 200
    """Completion tokens are drawn uniformly from ``[min, max]``, then capped by ``max_tokens``."""
    cached_fraction: float = 0.0
    """Probability that a chat request reports cached prompt tokens (only prompts of 1024+)."""
    error_rate: float = 0.0
    """Probability that a request without ``X-Mock-Error`` fails with one of ``error_types``."""
    error_types: tuple[ErrorKind, ...] = DEFAULT_ERROR_TYPES
    hang_s: float = 30.0
    """How long an injected ``timeout`` hangs before answering 200 (scaled by ``time_scale``)."""
    seed: int | None = None
    """With a seed, the random decisions are the same sequence in request order, run after run."""
    time_scale: float = 1.0
    """Multiplier on every sleep, header-requested ones included; 0 never sleeps."""
    api_key: str | None = None
    """When set, a request must carry ``Authorization: Bearer <api_key>`` or get OpenAI's 401."""

    def __post_init__(self) -> None:
        if not self.models or not all(isinstance(m, str) and m for m in self.models):
            raise ConfigError(f"models: must be one or more non-empty names, got {self.models!r}")
        _check_non_negative("latency_median_ms", self.latency_median_ms)
        _check_non_negative("latency_sigma", self.latency_sigma)
        _check_non_negative("ttft_median_ms", self.ttft_median_ms)
        _check_non_negative("hang_s", self.hang_s)
        _check_non_negative("time_scale", self.time_scale)
        _check_probability("cached_fraction", self.cached_fraction)
        _check_probability("error_rate", self.error_rate)
        for name in ("completion_tokens_min", "completion_tokens_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}: must be a whole number >= 0, got {value!r}")
        if self.completion_tokens_min > self.completion_tokens_max:
            raise ConfigError(
                f"completion_tokens_min: must not exceed completion_tokens_max "
                f"({self.completion_tokens_min} > {self.completion_tokens_max})"
            )
        unknown = [kind for kind in self.error_types if kind not in ERROR_KINDS]
        if unknown:
            raise ConfigError(
                f"error_types: unknown {unknown!r}; choose from {', '.join(ERROR_KINDS)}"
            )
        if self.error_rate > 0 and not self.error_types:
            raise ConfigError("error_types: must name at least one error when error_rate > 0")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ConfigError(f"seed: must be a whole number or None, got {self.seed!r}")

    def scaled_s(self, ms: float) -> float:
        """Seconds to actually sleep for ``ms`` milliseconds of simulated time."""
        return ms * self.time_scale / 1000.0


def _check_non_negative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name}: must be a finite number >= 0, got {value!r}")
    if value < 0:
        raise ConfigError(f"{name}: must be a finite number >= 0, got {value!r}")


def _check_probability(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}: must be a probability in [0, 1], got {value!r}")
