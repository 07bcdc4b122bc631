"""Judge prompts answered: the mock plays the LLM judge for aivitals' own tests and demos.

A chat request whose first message is a system message beginning with aivitals' judge rubric
(`aivitals.quality.judge_prompt.RUBRIC_MARKER`) is answered with a JSON verdict, one entry per
criterion the prompt lists, instead of filler. What the verdict says is steered from inside the
text being judged, so a test controls one judged call at a time through the application's own
answer: a directive ``[mock-judge key=value ...]`` anywhere in the question, the context or the
answer.

>>> import json
>>> from aivitals.quality.judge_prompt import RUBRIC
>>> case = {"criteria": [{"name": "relevance"}, {"name": "tone"}], "context": [],
...         "question": "Hi?", "answer": "Hello! [mock-judge score=0.25 tone=0.5]"}
>>> body = {"messages": [{"role": "system", "content": RUBRIC},
...                      {"role": "user", "content": json.dumps(case)}]}
>>> judged = read_judge_request(body)
>>> json.loads(judged.verdict())["relevance"]["score"], json.loads(judged.verdict())["tone"]
(0.25, {'score': 0.5, 'reason': 'mock-llm: tone is 0.5'})

Directives: ``score=X`` (every criterion), ``<criterion>=X`` (one; ``<criterion>=invalid`` writes
a score that is not a number), ``malformed`` (the reply is not JSON), ``latency_ms=N`` (answer
that slowly), ``error=<kind>`` (fail as ``X-Mock-Error`` would). ``X-Mock-*`` headers still win.
Without a directive every criterion scores `DEFAULT_SCORE`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from aivitals.mock_llm.config import ERROR_KINDS, ErrorKind
from aivitals.mock_llm.controls import ControlError, Controls
from aivitals.quality.judge_prompt import RUBRIC_MARKER

DEFAULT_SCORE = 0.9
MALFORMED_REPLY = "Relevance: high. Hallucination: none that I can see."
"""What a ``malformed`` directive answers: prose, as a model that ignored the JSON mode would."""

_DIRECTIVE = re.compile(r"\[mock-judge((?:\s+[a-z_][a-z0-9_]*(?:=[^\s\]]*)?)*)\s*\]")


@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """A judge prompt the mock recognised, and what its directives ask for."""

    criteria: tuple[str, ...]
    scores: dict[str, float | str] = field(default_factory=dict)
    score: float | None = None
    malformed: bool = False
    latency_ms: float | None = None
    error: ErrorKind | None = None

    def steer(self, controls: Controls) -> Controls:
        """The request's controls with the directives' latency and error (headers win)."""
        return replace(
            controls,
            latency_ms=controls.latency_ms if controls.latency_ms is not None else self.latency_ms,
            error=controls.error or self.error,
        )

    def verdict(self) -> str:
        """The reply's text: the JSON verdict (or the prose of a ``malformed`` one)."""
        if self.malformed:
            return MALFORMED_REPLY
        verdict: dict[str, Any] = {}
        for name in self.criteria:
            value = self.scores.get(name, self.score if self.score is not None else DEFAULT_SCORE)
            score: Any = "high" if value == "invalid" else value
            verdict[name] = {"score": score, "reason": f"mock-llm: {name} is {value}"}
        return json.dumps(verdict)


def read_judge_request(body: dict[str, Any]) -> JudgeRequest | None:
    """The judge prompt in a chat body, or None when it is not one; a bad directive raises
    `ControlError` (answered 400, as a bad ``X-Mock-*`` header is)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        return None
    system = messages[0]
    content = system.get("content")
    if system.get("role") != "system" or not isinstance(content, str):
        return None
    if not content.startswith(RUBRIC_MARKER):
        return None
    prompt = next(
        (
            m.get("content")
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        None,
    )
    text = prompt if isinstance(prompt, str) else ""
    criteria: tuple[str, ...] = ()
    try:
        case = json.loads(text)
    except ValueError:
        case = None
    if isinstance(case, dict) and isinstance(case.get("criteria"), list):
        criteria = tuple(
            c["name"]
            for c in case["criteria"]
            if isinstance(c, dict) and isinstance(c.get("name"), str)
        )
        # Directives are read from the case's texts, decoded (JSON escapes undone).
        text = "\n".join(
            [
                *map(str, case.get("context") or []),
                str(case.get("question")),
                str(case.get("answer")),
            ]
        )
    return _directed(criteria, text)


def _directed(criteria: tuple[str, ...], text: str) -> JudgeRequest:
    judged = JudgeRequest(criteria=criteria)
    scores: dict[str, float | str] = {}
    for match in _DIRECTIVE.finditer(text):
        for item in match.group(1).split():
            key, _, raw = item.partition("=")
            if key == "malformed":
                judged = replace(judged, malformed=True)
            elif key == "latency_ms":
                judged = replace(judged, latency_ms=_number(key, raw, top=None))
            elif key == "error":
                judged = replace(judged, error=_error(raw))
            elif key == "score":
                judged = replace(judged, score=_number(key, raw, top=1.0))
            else:
                scores[key] = "invalid" if raw == "invalid" else _number(key, raw, top=1.0)
    return replace(judged, scores=scores)


def _number(key: str, raw: str, *, top: float | None) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0 and (top is None or value <= top)):
        bound = f"from 0 to {top:g}" if top is not None else ">= 0"
        raise ControlError(f"[mock-judge {key}=...] must be a number {bound}, got {raw!r}")
    return value


def _error(raw: str) -> ErrorKind:
    for kind in ERROR_KINDS:
        if raw == kind:
            return kind
    raise ControlError(
        f"[mock-judge error=...] must be one of {', '.join(ERROR_KINDS)}; got {raw!r}"
    )


def judge_reply(reply: dict[str, Any], judged: JudgeRequest | None) -> dict[str, Any]:
    """A whole ``chat.completion`` with the verdict as its content (unchanged when not judged)."""
    if judged is None:
        return reply
    message = reply["choices"][0]["message"]
    message["content"] = judged.verdict()
    message["refusal"] = None
    return reply
