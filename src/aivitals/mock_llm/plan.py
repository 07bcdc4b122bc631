"""`Planner`: every random decision about one request, made once, when the request arrives.

Each plan draws exactly six numbers from the planner's generator, whatever the headers and the
endpoint, so a header-controlled request never shifts the decisions made for the ones after it.
With a seed, the sequence of plans is the same run after run (in request order):

>>> from aivitals.mock_llm.config import MockConfig
>>> from aivitals.mock_llm.controls import NO_CONTROLS
>>> planner = Planner(MockConfig(seed=1, time_scale=0))
>>> first = [planner.plan(NO_CONTROLS, prompt_tokens=10).completion_tokens for _ in range(3)]
>>> planner.reset()
>>> first == [planner.plan(NO_CONTROLS, prompt_tokens=10).completion_tokens for _ in range(3)]
True
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from aivitals.mock_llm.config import ErrorKind, MockConfig
from aivitals.mock_llm.controls import Controls, FinishReason

# OpenAI caches prompts of 1024 tokens or more, in steps of 128 tokens.
CACHE_MIN_PROMPT_TOKENS = 1024
CACHE_STEP_TOKENS = 128

_TAU = 2.0 * math.pi


@dataclass(frozen=True, slots=True)
class Plan:
    """What one request will get. Times are in seconds to sleep, already scaled by ``time_scale``."""

    error: ErrorKind | None
    latency_s: float
    """To the whole answer; for a stream, to the last chunk."""
    ttft_s: float
    """To the first chunk of a stream; never more than ``latency_s``."""
    hang_s: float
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    """Reasoning tokens included, as OpenAI counts them."""
    reasoning_tokens: int
    finish_reason: FinishReason
    cache_write_tokens: int = 0
    """Prompt tokens written to the cache (both lifetimes); part of ``prompt_tokens``."""
    cache_write_1h_tokens: int = 0
    """The part of ``cache_write_tokens`` written with a 1-hour lifetime."""
    web_search_requests: int = 0
    service_tier: str | None = None
    """``X-Mock-Service-Tier``; None reports the tier the request's ``service_tier`` implies."""
    answer: str | None = None
    """The answer's text (``X-Mock-Answer``, ``X-Mock-Text``); None answers filler."""
    tool_call: str | None = None
    """``X-Mock-Tool-Call``: the answer is a call to this tool, with the text as arguments."""

    @property
    def uncached_tokens(self) -> int:
        """Prompt tokens neither read from nor written to the cache (Anthropic's ``input_tokens``)."""
        return self.prompt_tokens - self.cached_tokens - self.cache_write_tokens

    @property
    def visible_tokens(self) -> int:
        """Completion tokens that show up as text: the completion minus its reasoning."""
        return self.completion_tokens - self.reasoning_tokens


class Planner:
    """Owns the one random generator; handlers call `plan` in arrival order."""

    def __init__(self, config: MockConfig) -> None:
        self._config = config
        self._rng = random.Random(config.seed)

    def reset(self) -> None:
        """Start the seeded sequence again (without a seed, draw a fresh one)."""
        self._rng.seed(self._config.seed)

    def plan(
        self,
        controls: Controls,
        *,
        prompt_tokens: int,
        max_tokens: int | None = None,
        cacheable: bool = False,
    ) -> Plan:
        """Decide one request. ``prompt_tokens`` is the estimate from the body; ``cacheable``
        marks chat requests, the only ones that can report cached prompt tokens at random."""
        config = self._config
        draw = self._rng.random
        u_error, u_kind, u_radius, u_angle, u_tokens, u_cached = [draw() for _ in range(6)]

        error = controls.error
        if error is None and u_error < config.error_rate:
            count = len(config.error_types)
            error = config.error_types[min(int(u_kind * count), count - 1)]

        # Box-Muller: two independent standard normals from two uniforms (1 - u is in (0, 1]).
        radius = math.sqrt(-2.0 * math.log1p(-u_radius))
        sigma = config.latency_sigma
        latency_ms = controls.latency_ms
        if latency_ms is None:
            z = radius * math.cos(_TAU * u_angle)
            latency_ms = config.latency_median_ms * math.exp(sigma * z)
        ttft_ms = controls.ttft_ms
        if ttft_ms is None:
            z = radius * math.sin(_TAU * u_angle)
            ttft_ms = min(config.ttft_median_ms * math.exp(sigma * z), latency_ms)
        else:
            # An explicit TTFT wins over a drawn latency: the stream cannot end before it starts.
            latency_ms = max(latency_ms, ttft_ms)

        cached = controls.cached_tokens
        written_1h = controls.cache_write_1h_tokens or 0
        written = controls.cache_write_tokens
        if written is None:
            written = written_1h
        prompt = controls.prompt_tokens
        if prompt is None:
            prompt = max(prompt_tokens, (cached or 0) + written)
        if cached is None:
            cached = 0
            if (
                cacheable
                and u_cached < config.cached_fraction
                and prompt >= CACHE_MIN_PROMPT_TOKENS
            ):
                cached = (prompt - written) // CACHE_STEP_TOKENS * CACHE_STEP_TOKENS

        reasoning = controls.reasoning_tokens or 0
        finish: FinishReason = "stop"
        completion = controls.completion_tokens
        if completion is None:
            span = config.completion_tokens_max - config.completion_tokens_min + 1
            completion = config.completion_tokens_min + min(int(u_tokens * span), span - 1)
            completion += reasoning  # the drawn count is the visible answer
            if max_tokens is not None and completion > max_tokens:
                completion = max_tokens
                reasoning = min(reasoning, completion)
                finish = "length"

        return Plan(
            error=error,
            latency_s=config.scaled_s(latency_ms),
            ttft_s=config.scaled_s(ttft_ms),
            hang_s=config.hang_s * config.time_scale,
            prompt_tokens=prompt,
            cached_tokens=cached,
            completion_tokens=completion,
            reasoning_tokens=reasoning,
            finish_reason=controls.finish_reason
            or ("tool_calls" if controls.tool_call and finish == "stop" else finish),
            cache_write_tokens=written,
            cache_write_1h_tokens=written_1h,
            web_search_requests=controls.web_search_requests or 0,
            service_tier=controls.service_tier,
            answer=controls.answer,
            tool_call=controls.tool_call,
        )
