"""The ``refusal`` evaluator: the provider said so, or the answer opens by declining.

>>> from aivitals.content import CallContent
>>> from aivitals.model import Call
>>> call = Call(provider="openai", model="gpt-4o-mini", latency_ms=1.0)
>>> refusal(call, CallContent(refusal="I'm sorry, I can't assist with that."))
1.0
>>> refusal(call, CallContent(output_text="Je ne peux pas vous aider avec cela."))
1.0
>>> refusal(call, CallContent(output_text="I can't stress enough: back up first."))
0.0
"""

from __future__ import annotations

from aivitals.content import CallContent
from aivitals.detectors.refusal import is_refusal
from aivitals.model import Call
from aivitals.quality.evaluators.basic import answered


def refusal(call: Call, content: CallContent) -> float | None:
    """1.0 for OpenAI's ``refusal`` field, a ``refusal`` finish reason (Anthropic's stop reason),
    or an answer the phrase detector (`aivitals.detectors.refusal`) reads as declining."""
    if not answered(call):
        return None
    if content.refusal or "refusal" in (content.finish_reason, call.finish_reason):
        return 1.0
    return 1.0 if is_refusal(content.output_text) else 0.0
