"""Generated call histories for the drift tests, written through the store.

`history` draws a seeded workload hour by hour: two models, two features, lognormal latency and
tokens, 2% errors, a refusal score from the refusal evaluator on every successful call. A
`Change` alters one group's calls from some instant on (latency x1.5 for one model, output
tokens x2 after a prompt version, refusals from 1% to 8%), so tests know what drifted and where.
The raw values drawn are returned too, so tests compute statistics on them without the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np

from aivitals.model import Call, Score
from aivitals.store.sql import SqlStore

MODELS = ("m-a", "m-b")
FEATURES = ("search", "chat")
LATENCY_MS = {"m-a": 800.0, "m-b": 1500.0}


@dataclass(frozen=True, slots=True)
class Change:
    """From ``since`` on (until ``until``, when given), calls of ``model`` / ``feature`` (None:
    any) are changed."""

    since: datetime
    until: datetime | None = None
    model: str | None = None
    feature: str | None = None
    latency_factor: float = 1.0
    output_factor: float = 1.0
    refusal_rate: float | None = None
    prompt_version: str | None = None

    def applies(self, at: datetime, model: str, feature: str) -> bool:
        return (
            at >= self.since
            and (self.until is None or at < self.until)
            and (self.model is None or self.model == model)
            and (self.feature is None or self.feature == feature)
        )


@dataclass(slots=True)
class Drawn:
    """What was written: every call and score."""

    calls: list[Call] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)


def history(
    store: SqlStore,
    *,
    now: datetime,
    days: int = 8,
    per_hour: int = 240,
    seed: int = 1,
    changes: tuple[Change, ...] = (),
    last_hour_only: bool = False,
) -> Drawn:
    """``per_hour`` calls per model each hour of the ``days`` days before ``now``, written a
    day at a time. ``last_hour_only``: only the hour before ``now``'s time of day on each day,
    what a one-hour drift against trailing days reads (a benchmark's many runs afford no more)."""
    rng = np.random.default_rng(seed)
    drawn = Drawn()
    start = now - timedelta(days=days)
    written = (0, 0)
    for hour in range(days * 24):
        if last_hour_only and hour % 24 != 23:
            continue
        began = start + timedelta(hours=hour)
        calls, scores = _hour(rng, began, per_hour, changes)
        drawn.calls.extend(calls)
        drawn.scores.extend(scores)
        if hour % 24 == 23:
            store.write(drawn.calls[written[0] :], drawn.scores[written[1] :])
            written = (len(drawn.calls), len(drawn.scores))
    return drawn


def _hour(
    rng: np.random.Generator, began: datetime, per_hour: int, changes: tuple[Change, ...]
) -> tuple[list[Call], list[Score]]:
    calls: list[Call] = []
    scores: list[Score] = []
    for model in MODELS:
        offsets = np.sort(rng.uniform(0, 3_600_000, per_hour))
        features = rng.integers(0, len(FEATURES), per_hour)
        latency = rng.lognormal(math.log(LATENCY_MS[model]), 0.4, per_hour)
        ttft_share = rng.uniform(0.1, 0.3, per_hour)
        input_tokens = rng.lognormal(6.5, 0.5, per_hour).astype(np.int64) + 1
        output_tokens = rng.lognormal(5.2, 0.5, per_hour)
        failed = rng.random(per_hour) < 0.02
        kinds = rng.integers(0, 2, per_hour)
        refusals = rng.random(per_hour)
        for i in range(per_hour):
            at = began + timedelta(milliseconds=float(offsets[i]))
            feature = FEATURES[int(features[i])]
            latency_factor = output_factor = 1.0
            refusal_rate, version = 0.01, "v1"
            for change in changes:
                if change.applies(at, model, feature):
                    latency_factor *= change.latency_factor
                    output_factor *= change.output_factor
                    refusal_rate = change.refusal_rate or refusal_rate
                    version = change.prompt_version or version
            error = bool(failed[i])
            ms = float(round(latency[i] * latency_factor, 3))
            output = 0 if error else int(output_tokens[i] * output_factor) + 1
            call = Call(
                provider="openai",
                model=model,
                started_at=at,
                latency_ms=ms,
                ttft_ms=None if error else round(ms * float(ttft_share[i]), 3),
                input_tokens=int(input_tokens[i]),
                output_tokens=output,
                cost_usd=(Decimal(int(input_tokens[i])) * 100 + Decimal(output) * 400).scaleb(-9),
                status="error" if error else "ok",
                error_type=("rate_limit", "timeout")[int(kinds[i])] if error else None,
                feature=feature,
                prompt_version=version,
            )
            calls.append(call)
            if not error:
                scores.append(
                    Score(
                        call_id=call.id,
                        name="refusal",
                        value=float(refusals[i] < refusal_rate),
                        source="evaluator",
                    )
                )
    return calls, scores
