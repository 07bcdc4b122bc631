"""The built-in evaluators (empty, truncated, refusal, json_valid, pii_leak) and your own."""

from aivitals.quality.evaluators.consumer import EvaluatorConsumer, check_names
from aivitals.quality.evaluators.registry import (
    BUILTIN,
    Evaluator,
    evaluator,
    register_evaluator,
    registered,
    unregister_evaluator,
)

__all__ = [
    "BUILTIN",
    "Evaluator",
    "EvaluatorConsumer",
    "check_names",
    "evaluator",
    "register_evaluator",
    "registered",
    "unregister_evaluator",
]
