"""A span's messages, when its sender put them on it, as the call's `CallContent`.

Instrumentations carry the prompt and the answer (when their content capture is on) in one of
three ways, all read here:

- OpenTelemetry's GenAI conventions (current): ``gen_ai.input.messages`` and
  ``gen_ai.output.messages``, JSON lists of ``{role, parts: [{type: "text", content}, {type:
  "tool_call", name, arguments}, ...]}``, with ``gen_ai.system_instructions`` (a list of parts);
- the older indexed form (OpenLLMetry): ``gen_ai.prompt.N.role`` / ``.content`` and
  ``gen_ai.completion.N.role`` / ``.content`` (and ``.tool_calls.M.name`` / ``.arguments``);
- OpenInference: ``llm.input_messages.N.message.role`` / ``.content`` (or its parts,
  ``.contents.M.message_content.text``, as its Anthropic instrumentation sends them) and
  ``llm.output_messages.N.message.content`` (and ``.tool_calls.M.tool_call.function.name`` /
  ``.arguments``).

Read only inside the recorder's content thunk, on the quality worker, and only when something
reads content: the receiver's path keeps a reference to the span and nothing more.

>>> from opentelemetry.proto.trace.v1.trace_pb2 import Span
>>> from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
>>> span = Span(attributes=[
...     KeyValue(key="gen_ai.prompt.0.role", value=AnyValue(string_value="user")),
...     KeyValue(key="gen_ai.prompt.0.content", value=AnyValue(string_value="Capital?")),
...     KeyValue(key="gen_ai.completion.0.content", value=AnyValue(string_value="Paris."))])
>>> content = content_of_span(span, "stop")
>>> content.messages[0].text, content.output_text
('Capital?', 'Paris.')
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aivitals.content import CallContent, ContentMessage, ToolCallContent
from aivitals.extract.fields import MAX_TEXT_CHARS, arguments_text, clip
from aivitals.otlp.values import any_value

_INDEXED = re.compile(
    r"^(?:gen_ai\.(?P<gside>prompt|completion)\.(?P<gi>\d+)"
    r"|llm\.(?P<oside>input|output)_messages\.(?P<oi>\d+)\.message)"
    r"\.(?P<rest>.+)$"
)
_PART = re.compile(r"^contents\.(?P<p>\d+)\.message_content\.text$")
_TOOL = re.compile(r"^tool_calls\.(?P<t>\d+)\.(?:tool_call\.function\.)?(?P<what>name|arguments)$")
_WANTED = ("gen_ai.", "llm.")
_STRUCTURED = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")
CONTENT_PREFIXES = (
    *_STRUCTURED,
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages.",
    "llm.output_messages.",
)
"""What the name of every attribute read here begins with: a span with none of them has no
content (`content_of_span` gives None), so the mapping hands no thunk over for it."""


def content_of_span(span: Span, finish_reason: str | None) -> CallContent | None:
    """The span's prompt and answer; None when it carries neither."""
    structured: dict[str, Any] = {}
    indexed: dict[tuple[bool, int], dict[str, Any]] = {}
    for attribute in span.attributes:
        key = attribute.key
        if not key.startswith(_WANTED):
            continue
        if key in _STRUCTURED:
            structured[key] = any_value(attribute.value)
            continue
        found = _INDEXED.match(key)
        if found is None:
            continue
        output = (found["gside"] or found["oside"]) in ("completion", "output")
        index = int(found["gi"] or found["oi"])
        indexed.setdefault((output, index), {})[found["rest"]] = any_value(attribute.value)
    if structured:
        return _structured(structured, finish_reason)
    if indexed:
        return _indexed(indexed, finish_reason)
    return None


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _parts_text(parts: Any) -> str:
    if isinstance(parts, str):
        return parts
    texts = [
        str(part.get("content") or "")
        for part in parts or ()
        if isinstance(part, dict) and part.get("type") == "text"
    ]
    return "\n".join(texts)[:MAX_TEXT_CHARS]


def _structured(found: dict[str, Any], finish_reason: str | None) -> CallContent:
    messages: list[ContentMessage] = []
    system = _json(found.get("gen_ai.system_instructions"))
    if system:
        messages.append(ContentMessage(role="system", text=_parts_text(system)))
    for message in _json(found.get("gen_ai.input.messages")) or ():
        if isinstance(message, dict) and isinstance(message.get("role"), str):
            text = _parts_text(message.get("parts"))
            messages.append(ContentMessage(role=message["role"], text=text))
    texts: list[str] = []
    calls: list[ToolCallContent] = []
    for message in _json(found.get("gen_ai.output.messages")) or ():
        if not isinstance(message, dict):
            continue
        parts = message.get("parts") or ()
        text = _parts_text(parts)
        if text:
            texts.append(text)
        for part in parts if isinstance(parts, list) else ():
            if isinstance(part, dict) and part.get("type") == "tool_call":
                calls.append(
                    ToolCallContent(
                        name=str(part.get("name") or ""),
                        arguments=arguments_text(part.get("arguments")),
                    )
                )
    return CallContent(
        messages=tuple(messages),
        output_text=clip("\n".join(texts)) if texts else None,
        tool_calls=tuple(calls),
        finish_reason=finish_reason,
    )


def _indexed(
    found: dict[tuple[bool, int], dict[str, Any]], finish_reason: str | None
) -> CallContent:
    messages: list[ContentMessage] = []
    texts: list[str] = []
    calls: list[ToolCallContent] = []
    for (output, _), fields in sorted(found.items()):
        text = fields.get("content")
        if not isinstance(text, str):
            text = _parts(fields) or None
        if not output:
            role = fields.get("role")
            messages.append(
                ContentMessage(
                    role=role if isinstance(role, str) else "user",
                    text=clip(text) or "" if isinstance(text, str) else "",
                )
            )
            continue
        if isinstance(text, str) and text:
            texts.append(text)
        calls.extend(_tool_calls(fields.items()))
    return CallContent(
        messages=tuple(messages),
        output_text=clip("\n".join(texts)) if texts else None,
        tool_calls=tuple(calls),
        finish_reason=finish_reason,
    )


def _parts(fields: dict[str, Any]) -> str:
    """OpenInference's multi-part message: ``contents.M.message_content.text``, in order."""
    parts: list[tuple[int, str]] = []
    for rest, value in fields.items():
        part = _PART.match(rest)
        if part is not None and isinstance(value, str):
            parts.append((int(part["p"]), value))
    return "\n".join(text for _, text in sorted(parts))


def _tool_calls(fields: Iterable[tuple[str, Any]]) -> list[ToolCallContent]:
    by_index: dict[int, dict[str, str]] = {}
    for rest, value in fields:
        tool = _TOOL.match(rest)
        if tool is not None:
            by_index.setdefault(int(tool["t"]), {})[tool["what"]] = arguments_text(value)
    return [
        ToolCallContent(name=parts.get("name", ""), arguments=parts.get("arguments", ""))
        for _, parts in sorted(by_index.items())
    ]
