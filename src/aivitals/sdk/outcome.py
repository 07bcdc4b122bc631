"""Recording a labelled outcome: what a call predicted, and what turned out to be true."""

from __future__ import annotations

import logging

from aivitals.model import InvalidRecord, Label, Outcome
from aivitals.sdk.runtime import get_runtime

log = logging.getLogger("aivitals.sdk")


def outcome(
    call_id: str,
    *,
    predicted: Label,
    actual: Label,
    probability: float | None = None,
    name: str = "default",
    source: str = "api",
    model: str | None = None,
    feature: str | None = None,
) -> Outcome | None:
    """Record the true outcome of a call used as a classifier or scorer; None if invalid.

    >>> import aivitals
    >>> aivitals.outcome("0192f0c4-0000-7000-8000-000000000000", predicted="spam", actual="ham").kind
    'class'

    Two labels (text, or True/False) are a classification, scored by accuracy, precision,
    recall and F1; ``probability``, the model's confidence in its predicted label, adds ROC AUC
    for two classes. A number predicted for a True/False truth is the probability of True. Two
    numbers are a regression, scored by MAE and RMSE (``aivitals quality``, docs/quality.md).
    ``name`` is the task, when one call is judged on several label sets.

    Never raises: an outcome that cannot be right (a probability above 1, a label for a number)
    is logged with the reason and not recorded.
    """
    try:
        item = Outcome.of(
            call_id,
            predicted=predicted,
            actual=actual,
            probability=probability,
            name=name,
            source=source,
            model=model,
            feature=feature,
        )
    except (InvalidRecord, TypeError) as exc:
        log.warning("aivitals: outcome for call %r refused: %s", str(call_id)[:80], exc)
        get_runtime().recorder.stats.refused += 1
        return None
    runtime = get_runtime()
    if runtime.enabled:
        return runtime.recorder.record_outcome(item)
    return item
