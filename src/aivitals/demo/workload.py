"""The demo's workload: a realistic mix of calls, decided up front from a seed.

Every request carries ``X-Mock-*`` headers that tell the fake upstream exactly what to do (latency,
tokens, cached tokens, the error to inject), so one seed gives the same calls, tokens, costs and
errors on every run; only the measured latencies move with the machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# (model, share of traffic): a cheap model for most traffic, a strong one, a reasoning one, and a
# self-hosted model that no price catalog knows (its calls stay unpriced, and say so).
MODELS: tuple[tuple[str, float], ...] = (
    ("gpt-4o-mini", 0.55),
    ("gpt-4o", 0.25),
    ("o3-mini", 0.14),
    ("acme-internal-7b", 0.06),
)
FEATURES = (
    ("search", "growth"),
    ("chat", "core"),
    ("summarise", "core"),
    ("autocomplete", "growth"),
)
# (X-Mock-Error value, share of calls)
ERRORS: tuple[tuple[str, float], ...] = (
    ("rate_limit", 0.03),
    ("server_error", 0.015),
    ("timeout", 0.01),
    ("context_length", 0.01),
)
USERS = 20


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One request of the demo and what the fake upstream is told to do with it."""

    index: int
    model: str
    feature: str
    team: str
    user: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    latency_ms: float
    ttft_ms: float
    error: str | None
    score: float | None
    headers: dict[str, str] = field(default_factory=dict)


def plan_workload(calls: int, *, seed: int) -> list[PlannedCall]:
    """``calls`` requests, the same for the same seed."""
    rng = random.Random(seed)
    names = [name for name, _ in MODELS]
    weights = [share for _, share in MODELS]
    planned: list[PlannedCall] = []
    for index in range(calls):
        model = rng.choices(names, weights)[0]
        feature, team = FEATURES[rng.randrange(len(FEATURES))]
        user = f"user-{rng.randrange(USERS):03d}"
        prompt = int(rng.lognormvariate(7.0, 0.8)) + 20
        # Long shared system prompts get cached: about a third of the larger prompts.
        cached = (prompt // 1024) * 1024 if prompt >= 1024 and rng.random() < 0.35 else 0
        completion = int(rng.lognormvariate(5.0, 0.6)) + 5
        reasoning = int(completion * rng.uniform(0.4, 0.8)) if model == "o3-mini" else 0
        stream = rng.random() < 0.35
        # Bigger models are slower; the mock sleeps this long.
        base = {"gpt-4o-mini": 180.0, "gpt-4o": 420.0, "o3-mini": 900.0}.get(model, 250.0)
        latency = base * rng.lognormvariate(0.0, 0.45)
        ttft = latency * rng.uniform(0.15, 0.35)
        error = _draw_error(rng)
        score = round(rng.betavariate(8, 2), 3) if error is None and rng.random() < 0.4 else None
        headers = {
            "X-Mock-Latency-Ms": f"{latency:.1f}",
            "X-Mock-TTFT-Ms": f"{ttft:.1f}",
            "X-Mock-Prompt-Tokens": str(prompt),
            "X-Mock-Completion-Tokens": str(completion),
            "X-Mock-Cached-Tokens": str(cached),
            "X-Mock-Reasoning-Tokens": str(reasoning),
        }
        if error is not None:
            headers["X-Mock-Error"] = error
        planned.append(
            PlannedCall(
                index=index,
                model=model,
                feature=feature,
                team=team,
                user=user,
                stream=stream,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached_tokens=cached,
                reasoning_tokens=reasoning,
                latency_ms=latency,
                ttft_ms=ttft,
                error=error,
                score=score,
                headers=headers,
            )
        )
    return planned


def _draw_error(rng: random.Random) -> str | None:
    roll = rng.random()
    for name, share in ERRORS:
        if roll < share:
            return name
        roll -= share
    return None
