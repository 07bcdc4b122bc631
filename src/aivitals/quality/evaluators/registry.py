"""Which evaluators exist: the five built in, and the ones the application registers.

An evaluator is a function of the call and its content returning a float (the score's value,
0 to 1), a whole `Score` (for another range, or a comment), or None (no score for this call).
It runs on the quality worker thread, never the caller's; one that raises is counted
(``aivitals_quality_errors_total{part="evaluator/<name>"}``) and skipped.

>>> @evaluator("polite")
... def polite(call, content):
...     return 1.0 if "please" in (content.output_text or "").lower() else 0.0
>>> "polite" in registered()
True
>>> unregister_evaluator("polite")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from aivitals.content import CallContent
from aivitals.model import Call, Score
from aivitals.quality.evaluators.basic import empty, truncated
from aivitals.quality.evaluators.json_valid import json_valid
from aivitals.quality.evaluators.pii_leak import pii_leak
from aivitals.quality.evaluators.refusal import refusal

Evaluator = Callable[[Call, CallContent], float | Score | None]
"""``fn(call, content) -> float | Score | None``."""

BUILTIN: Mapping[str, Evaluator] = {
    "empty": empty,
    "truncated": truncated,
    "refusal": refusal,
    "json_valid": json_valid,
    "pii_leak": pii_leak,
}
"""The built-in evaluators by score name, in the order they run."""

_lock = threading.Lock()
_user: dict[str, Evaluator] = {}


def register_evaluator(name: str, fn: Evaluator) -> None:
    """Run ``fn`` on every recorded call that has content; its scores are named ``name``.

    Registering a name again replaces its function; a built-in's name cannot be taken (turn
    the built-in off with ``configure(evaluators=[...])`` instead).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("an evaluator needs a non-empty name")
    if name in BUILTIN:
        raise ValueError(f"{name!r} is a built-in evaluator; pick another name")
    if not callable(fn):
        raise TypeError(f"evaluator {name!r} must be callable, got {fn!r}")
    with _lock:
        _user[name] = fn


def evaluator(name: str) -> Callable[[Evaluator], Evaluator]:
    """Decorator: `register_evaluator` under ``name``; the function is returned unchanged."""

    def register(fn: Evaluator) -> Evaluator:
        register_evaluator(name, fn)
        return fn

    return register


def unregister_evaluator(name: str) -> None:
    """Forget the evaluator registered as ``name`` (nothing if there is none)."""
    with _lock:
        _user.pop(name, None)


def registered() -> dict[str, Evaluator]:
    """Every evaluator by name: the built-ins, then the application's in registration order."""
    with _lock:
        return {**BUILTIN, **_user}
