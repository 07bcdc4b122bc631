"""`CallContent`: what a call said and answered, beside its `Call`, for the quality stage only.

A `Call` never carries text: it goes to Prometheus, logs and every sink, and text must not.
Sources that see the request and the answer (the SDK's client wrappers, the gateway's routes, the
OTLP receiver when spans carry messages) fill a `CallContent` next to the draft, and hand both to
the recorder. The recorder gives the content to the evaluators (off the caller's thread), to the
judge when the call is sampled, and to content capture only when the user turned it on; then it
is dropped.

>>> content = CallContent(
...     messages=(ContentMessage(role="user", text="Capital of France?"),),
...     output_text="Paris.",
...     finish_reason="stop",
... )
>>> content.asked_for_json, content.has_answer
(False, True)
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

ResponseFormat = Literal["text", "json_object", "json_schema"]


class ContentMessage(msgspec.Struct, frozen=True):
    """One message of the prompt: its role (system, user, assistant, tool) and its text."""

    role: str
    text: str


class ToolCallContent(msgspec.Struct, frozen=True):
    """A tool call in the answer: the tool's name and its arguments as the model wrote them."""

    name: str
    arguments: str = ""


class CallContent(msgspec.Struct, frozen=True, kw_only=True):
    """The prompt and the answer of one call, as its source saw them (streams: assembled).

    ``refusal`` is the provider's own refusal field (OpenAI's ``message.refusal``);
    ``finish_reason`` is the `Call`'s, in OpenAI's words (`aivitals.finish`).
    ``response_format`` and ``json_schema`` say whether the call asked for JSON, and in which
    shape; ``tools_schema`` maps a tool's name to its parameters' JSON Schema, when the request
    declared its tools.
    """

    messages: tuple[ContentMessage, ...] = ()
    output_text: str | None = None
    tool_calls: tuple[ToolCallContent, ...] = ()
    refusal: str | None = None
    finish_reason: str | None = None
    response_format: ResponseFormat | None = None
    json_schema: dict[str, Any] | None = None
    tools_schema: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)

    @property
    def asked_for_json(self) -> bool:
        """Whether the request asked for a JSON answer (tool-call arguments are JSON too)."""
        return self.response_format in ("json_object", "json_schema")

    @property
    def has_answer(self) -> bool:
        """Whether the answer has any text or tool call."""
        return bool(self.output_text and self.output_text.strip()) or bool(self.tool_calls)
