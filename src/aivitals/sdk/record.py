"""Recording a finished call or a quality score directly."""

from __future__ import annotations

import logging

from aivitals.model import Call, InvalidRecord, Score
from aivitals.salvage import salvage_score
from aivitals.sdk.context import set_last_call_id
from aivitals.sdk.handoff import handoff
from aivitals.sdk.runtime import get_runtime

log = logging.getLogger("aivitals.sdk")


def record(call: Call) -> Call:
    """Record a `Call` you built yourself; returns it priced. Never raises.

    >>> import aivitals
    >>> recorded = aivitals.record(aivitals.Call(provider="openai", model="gpt-4o", latency_ms=900.0,
    ...                                          input_tokens=2000, output_tokens=300))
    >>> str(recorded.cost_usd)
    '0.008'
    """
    runtime = get_runtime()
    if not runtime.enabled:
        return call
    recorded = runtime.recorder.record(call)
    set_last_call_id(recorded.id)
    return recorded


def score(
    call_id: str,
    name: str,
    value: float,
    *,
    source: str = "api",
    comment: str | None = None,
    min_value: float = 0.0,
    max_value: float = 1.0,
    model: str | None = None,
    feature: str | None = None,
) -> Score | None:
    """Attach a quality score to a call, now or hours later; returns the score, or None if invalid.

    >>> import aivitals
    >>> aivitals.score("0192f0c4-0000-7000-8000-000000000000", "helpfulness", 4, max_value=5).value
    4

    A value outside ``[min_value, max_value]`` or NaN, or a name, source or call id that is not
    valid text within its length (`aivitals.bounds`), is refused: it is logged with the reason and
    nothing is recorded (scores come from evaluators and users; they must not crash them). A bad
    ``comment``, ``model`` or ``feature`` is logged and left out; the score is recorded.

    Without ``model`` or ``feature``, a score for a call this process recorded lately takes the
    call's (the returned score shows them), so per-model quality in Prometheus and the live
    windows counts it; the store's reads join a score to its call by id, its team included.
    """
    try:
        item, refusals = salvage_score(
            {
                "call_id": call_id,
                "name": name,
                "value": value,
                "source": source,
                "comment": comment,
                "min_value": min_value,
                "max_value": max_value,
                "model": model,
                "feature": feature,
            }
        )
    except InvalidRecord as exc:
        log.warning("aivitals: score %r for call %s refused: %s", _short(name), call_id, exc)
        get_runtime().recorder.stats.refused += 1
        return None
    for refusal in refusals:
        log.warning(
            "aivitals: score %r for call %s had an invalid %s (%s); recorded without it",
            item.name,
            item.call_id,
            refusal.field,
            refusal,
        )
    runtime = get_runtime()
    if runtime.enabled:
        if item.model is None or item.feature is None:
            # The call may still be on its way to the recorder (`aivitals.sdk.handoff`): once
            # recorded, the recorder knows its model and feature.
            handoff.drain(timeout_s=1.0)
        return runtime.recorder.record_score(item)
    return item


def _short(name: object) -> str:
    # A refused name may be the reason (too long, not text): log only its start.
    text = repr(name)
    return text if len(text) <= 80 else f"{text[:77]}..."
