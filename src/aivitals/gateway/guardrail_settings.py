"""One ``[[guardrails]]`` entry of the gateway's config file, checked when the file is read.

```toml
[[guardrails]]
name = "cards"                 # unique; recorded on the calls it acts on
on = "input"                   # or "output"
detectors = ["card", "iban"]   # the built-in ones: email, phone, card, iban, secret
patterns = ['TICKET-\\d{4,}']  # regular expressions (Python's re)
deny = ["project nightingale"] # phrases, case-insensitive, whole words
prompt_injection = false       # the heuristic set of injection_phrases.yaml
json_schema = { type = "object", required = ["city"] }  # output only: the answer must fit
action = "redact"              # or "block" (400 content_filter) or "flag" (pass, record)
routes = ["chat", "messages"]  # omit: every route
models = ["gpt-4o-mini"]       # omit: every model
```

>>> from pydantic import ValidationError
>>> try:
...     GuardrailSettings(name="g", on="output", json_schema={"type": "object"}, action="redact")
... except ValidationError as exc:
...     print(exc.errors()[0]["msg"])
Value error, json_schema cannot redact: a schema says whether the whole answer fits, not which part to mask; use block or flag
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aivitals.detectors.finding import Kind

GuardrailRoute = Literal["chat", "completions", "embeddings", "messages", "responses"]
Side = Literal["input", "output"]
Action = Literal["redact", "block", "flag"]

MAX_NAME_CHARS = 64
"""A name is a Prometheus label value and part of the ``guardrail`` tag: kept short."""


class GuardrailSettings(BaseModel):
    """What one guardrail detects, where, and what it does about it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"^[A-Za-z0-9_.-]+$")
    on: Side
    action: Action
    detectors: list[Kind] = []
    patterns: list[str] = []
    deny: list[str] = []
    prompt_injection: bool = False
    json_schema: dict[str, Any] | None = None
    routes: list[GuardrailRoute] = []
    models: list[str] = []

    @model_validator(mode="after")
    def _coherent(self) -> GuardrailSettings:
        if not (
            self.detectors
            or self.patterns
            or self.deny
            or self.prompt_injection
            or self.json_schema is not None
        ):
            raise ValueError(
                "detects nothing: give detectors, patterns, deny, prompt_injection or json_schema"
            )
        for position, pattern in enumerate(self.patterns, 1):
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"patterns[{position}] {pattern!r} is not a regular expression: {exc}"
                ) from None
            if compiled.fullmatch(""):
                # An empty match is everywhere: every text would be flagged, and nothing masked.
                raise ValueError(f"patterns[{position}] {pattern!r} matches the empty text")
        for position, phrase in enumerate(self.deny, 1):
            if not phrase.strip():
                raise ValueError(f"deny[{position}] is blank")
        if self.json_schema is not None:
            if self.on != "output":
                raise ValueError('json_schema applies to answers only: on = "output"')
            if self.action == "redact":
                raise ValueError(
                    "json_schema cannot redact: a schema says whether the whole answer fits, "
                    "not which part to mask; use block or flag"
                )
            if schema_validator(self.json_schema) is None:
                raise ValueError("json_schema is not a schema jsonschema can compile")
        if "embeddings" in self.routes and self.on == "output":
            raise ValueError(
                "routes: embeddings answer vectors, no text: an output guardrail never acts there"
            )
        return self


def schema_validator(schema: dict[str, Any]) -> Any:
    """The json_valid evaluator's compiled (and cached) validator for ``schema``, or None when
    it cannot be compiled: one schema machinery for the evaluator and the guardrails."""
    from aivitals.quality.evaluators.json_valid import _validator  # noqa: PLC0415

    return _validator(json.dumps(schema, sort_keys=True))
