"""aivitals: observability for applications that call large language models.

>>> import aivitals
>>> with aivitals.track(model="gpt-4o-mini", feature="search") as call:
...     call.set_usage(input_tokens=900, output_tokens=120)
"""

from aivitals.config import ConfigError
from aivitals.errors import ErrorInfo, classify_error, classify_response
from aivitals.model import Call, InvalidRecord, Outcome, Score
from aivitals.pricing import Cost, Pricer
from aivitals.quality.evaluators import evaluator, register_evaluator
from aivitals.quality.judge_config import JudgeConfig, JudgeCriterion, SampleRule
from aivitals.recorder import Recorder
from aivitals.sdk.context import context, last_call_id
from aivitals.sdk.instrument import instrument
from aivitals.sdk.observe import observe
from aivitals.sdk.outcome import outcome
from aivitals.sdk.record import record, score
from aivitals.sdk.runtime import Runtime, configure, flush, get_runtime, shutdown
from aivitals.sdk.track import TrackedCall, current_call, track

__all__ = [
    "Call",
    "ConfigError",
    "Cost",
    "ErrorInfo",
    "InvalidRecord",
    "JudgeConfig",
    "JudgeCriterion",
    "Outcome",
    "Pricer",
    "Recorder",
    "Runtime",
    "SampleRule",
    "Score",
    "TrackedCall",
    "classify_error",
    "classify_response",
    "configure",
    "context",
    "current_call",
    "evaluator",
    "flush",
    "get_runtime",
    "instrument",
    "last_call_id",
    "observe",
    "outcome",
    "record",
    "register_evaluator",
    "score",
    "shutdown",
    "track",
]
