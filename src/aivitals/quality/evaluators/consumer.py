"""`EvaluatorConsumer`: runs the chosen evaluators on each call's content and records the scores.

Registered on the recorder's quality stage by `aivitals.runtime.build_runtime` (on by default):

>>> from aivitals.content import CallContent
>>> from aivitals.model import Call
>>> from aivitals.sinks.memory import MemorySink
>>> from aivitals.recorder import Recorder
>>> recorder = Recorder(batch_sinks=[MemorySink()])
>>> consumer = EvaluatorConsumer(recorder.record_score, evaluators=["empty", "truncated"])
>>> scores = consumer.evaluate(Call(provider="openai", model="gpt-4o-mini", latency_ms=1.0),
...                            CallContent(output_text="Paris.", finish_reason="stop"))
>>> [(s.name, s.value, s.source) for s in scores]
[('empty', 0.0, 'evaluator'), ('truncated', 0.0, 'evaluator')]
>>> recorder.close()
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from aivitals.config import ConfigError
from aivitals.content import CallContent
from aivitals.model import Call, Score
from aivitals.quality.evaluators.registry import BUILTIN, Evaluator, registered

SOURCE = "evaluator"
"""The ``source`` of every score an evaluator makes."""

NAME = "evaluators"
"""The consumer's name on the quality stage (and in ``aivitals_quality_errors_total``)."""

ErrorCounter = Callable[[str], None]


class EvaluatorConsumer:
    """A `ContentConsumer` that scores each call with the evaluators chosen.

    ``evaluators`` is True (every built-in and every registered evaluator, the ones registered
    later included) or the names to run (built-in or registered; unknown names raise
    `ConfigError`). ``record_score`` is the recorder's; ``count_error`` counts an evaluator
    that raised (the stage's `count_error`), which is then skipped for that call.
    """

    name = NAME

    def __init__(
        self,
        record_score: Callable[[Score], Score],
        *,
        evaluators: bool | Collection[str] = True,
        count_error: ErrorCounter | None = None,
    ) -> None:
        self._record_score = record_score
        self._count_error = count_error
        self._only = None if evaluators is True else frozenset(check_names(evaluators))

    def on_content(self, call: Call, content: CallContent) -> None:
        for score in self.evaluate(call, content):
            self._record_score(score)

    def evaluate(self, call: Call, content: CallContent) -> list[Score]:
        """The scores of ``call``; an evaluator that raises or returns nonsense is skipped."""
        scores = []
        for name, fn in self._chosen().items():
            try:
                score = _as_score(name, fn(call, content), call)
            except Exception:
                if self._count_error is None:
                    raise
                self._count_error(f"evaluator/{name}")
                continue
            if score is not None:
                scores.append(score)
        return scores

    def _chosen(self) -> dict[str, Evaluator]:
        every = registered()
        if self._only is None:
            return every
        return {name: fn for name, fn in every.items() if name in self._only}


def check_names(evaluators: bool | Collection[str]) -> Sequence[str]:
    """The evaluator names ``evaluators`` selects; raises `ConfigError` naming an unknown one."""
    if isinstance(evaluators, bool):
        return list(registered()) if evaluators else []
    if isinstance(evaluators, str):
        raise ConfigError(f"evaluators: give a list of names, not the string {evaluators!r}")
    known = registered()
    names = list(evaluators)
    for name in names:
        if name not in known:
            raise ConfigError(
                f"evaluators: unknown evaluator {name!r}; the built-ins are "
                f"{', '.join(BUILTIN)}, and yours must be registered (aivitals.evaluator) first"
            )
    return names


def _as_score(name: str, value: float | Score | None, call: Call) -> Score | None:
    if value is None:
        return None
    if isinstance(value, Score):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"evaluator {name!r} returned {type(value).__name__}, not a float")
    return Score(
        call_id=call.id,
        name=name,
        value=float(value),
        source=SOURCE,
        model=call.model,
        feature=call.feature,
    )
