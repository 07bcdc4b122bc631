"""Generated histories for the anomaly, forecast and rule-kind tests: calls with a daily rhythm.

Every hour of every day gets a Poisson number of calls per model, busy in the afternoon and quiet
at night (`RHYTHM`), with a small error rate and lognormal latencies; `Spike` overrides one
model's error rate (or volume) over a span. The calls are returned so that a test can work out
every expected figure from them, and written through the store like any other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np

from aivitals.model import Call

# Calls an hour at each hour of the day (UTC): night 20, afternoon peak 200.
RHYTHM = tuple(20 + 180 * max(0.0, math.sin(math.pi * (h - 6) / 16)) ** 2 for h in range(24))
MODELS = ("gpt-a", "gpt-b")


@dataclass(frozen=True)
class Spike:
    model: str
    start: datetime
    end: datetime
    error_rate: float | None = None
    volume: float = 1.0
    latency: float = 1.0


def history(
    start: datetime,
    end: datetime,
    *,
    seed: int,
    models: Sequence[str] = MODELS,
    error_rate: float = 0.01,
    cost_usd: str = "0.002",
    scale: float = 1.0,
    spikes: Sequence[Spike] = (),
) -> list[Call]:
    """Calls from ``start`` to ``end`` (whole hours), each hour's count drawn from the rhythm."""
    rng = np.random.default_rng(seed)
    calls: list[Call] = []
    hour = start
    n = 0
    while hour < end:
        for model in models:
            rate, volume, slower = error_rate, 1.0, 1.0
            for spike in spikes:
                if spike.model == model and spike.start <= hour < spike.end:
                    rate = spike.error_rate if spike.error_rate is not None else rate
                    volume, slower = spike.volume, spike.latency
            count = int(rng.poisson(RHYTHM[hour.hour] * scale * volume))
            offsets = np.sort(rng.uniform(0, 3600, count))
            failed = rng.random(count) < rate
            latency = rng.lognormal(math.log(800 * slower), 0.3, count)
            for offset, error, ms in zip(offsets, failed, latency, strict=True):
                n += 1
                calls.append(
                    Call(
                        id=f"{seed}-{n}",
                        provider="openai",
                        model=model,
                        started_at=hour + timedelta(seconds=float(offset)),
                        latency_ms=float(ms),
                        status="error" if error else "ok",
                        error_type="provider_down" if error else None,
                        cost_usd=Decimal(0) if error else Decimal(cost_usd),
                        input_tokens=100,
                        output_tokens=50,
                    )
                )
        hour += timedelta(hours=1)
    return calls
