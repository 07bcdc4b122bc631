"""OpenAI's Responses API: request (``input``, ``instructions``, ``text.format``, ``tools``),
whole answer (``output`` items), and a stream (its last event's response, else its deltas).

>>> response = {"output": [{"type": "message", "content": [
...     {"type": "output_text", "text": "Paris."}]}]}
>>> responses_content({"input": "Capital of France?"}, response, finish_reason="stop").output_text
'Paris.'
>>> events = [{"type": "response.refusal.delta", "delta": "I can't"},
...           {"type": "response.refusal.delta", "delta": " help."}]
>>> responses_stream_content({"input": "x"}, events, finish_reason="refusal").refusal
"I can't help."
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aivitals.content import CallContent, ResponseFormat, ToolCallContent
from aivitals.extract.fields import clip, field, model_schema, prompt_messages, schema_dict

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def responses_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The `CallContent` fields a Responses request says."""
    found: dict[str, Any] = {
        "messages": prompt_messages(request.get("input"), system=request.get("instructions"))
    }
    form = field(field(request.get("text"), "format"), "type")
    if form in ("json_object", "json_schema"):
        found["response_format"] = form
        if form == "json_schema":
            found["json_schema"] = schema_dict(
                field(field(request.get("text"), "format"), "schema")
            )
    elif isinstance(request.get("text_format"), type):  # responses.parse(text_format=Model)
        found["response_format"] = "json_schema"
        found["json_schema"] = model_schema(request["text_format"])
    tools: dict[str, dict[str, Any]] = {}
    for tool in request.get("tools") or ():
        name = field(tool, "name")
        parameters = schema_dict(field(tool, "parameters"))
        if field(tool, "type") == "function" and isinstance(name, str) and parameters is not None:
            tools[name] = parameters
    found["tools_schema"] = tools
    return found


def responses_content(
    request: Mapping[str, Any], response: object, *, finish_reason: str | None
) -> CallContent:
    """A whole ``Response``: its messages' text and refusal parts, its function calls."""
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[ToolCallContent] = []
    for item in field(response, "output") or ():
        kind = field(item, "type")
        if kind == "message":
            for part in field(item, "content") or ():
                part_kind = field(part, "type")
                if part_kind == "output_text" and isinstance(field(part, "text"), str):
                    texts.append(field(part, "text"))
                elif part_kind == "refusal" and isinstance(field(part, "refusal"), str):
                    refusals.append(field(part, "refusal"))
        elif kind == "function_call":
            calls.append(
                ToolCallContent(
                    name=str(field(item, "name") or ""),
                    arguments=clip(str(field(item, "arguments") or "")) or "",
                )
            )
    return _content(request, texts, refusals, tuple(calls), finish_reason)


def responses_stream_content(
    request: Mapping[str, Any], events: Iterable[object], *, finish_reason: str | None
) -> CallContent:
    """A stream: its terminal event carries the whole response; a stream cut before it is
    assembled from its text, refusal and function-call argument deltas."""
    texts: list[str] = []
    refusals: list[str] = []
    arguments: dict[object, list[str]] = {}
    names: dict[object, str] = {}
    for event in events:
        kind = field(event, "type")
        if kind in _TERMINAL:
            response = field(event, "response")
            if response is not None:
                return responses_content(request, response, finish_reason=finish_reason)
        delta = field(event, "delta")
        if kind == "response.output_text.delta" and isinstance(delta, str):
            texts.append(delta)
        elif kind == "response.refusal.delta" and isinstance(delta, str):
            refusals.append(delta)
        elif kind == "response.function_call_arguments.delta" and isinstance(delta, str):
            arguments.setdefault(field(event, "item_id"), []).append(delta)
        elif kind == "response.output_item.added":
            item = field(event, "item")
            if field(item, "type") == "function_call":
                names[field(item, "id")] = str(field(item, "name") or "")
    calls = tuple(
        ToolCallContent(name=names.get(key, ""), arguments=clip("".join(parts)) or "")
        for key, parts in arguments.items()
    )
    return _content(request, texts, refusals, calls, finish_reason)


def _content(
    request: Mapping[str, Any],
    texts: list[str],
    refusals: list[str],
    calls: tuple[ToolCallContent, ...],
    finish_reason: str | None,
) -> CallContent:
    asked = responses_request(request)
    response_format: ResponseFormat | None = asked.get("response_format")
    return CallContent(
        messages=asked["messages"],
        output_text=clip("".join(texts)) if texts else None,
        tool_calls=calls,
        refusal=clip("".join(refusals)) if refusals else None,
        finish_reason=finish_reason,
        response_format=response_format,
        json_schema=asked.get("json_schema"),
        tools_schema=asked["tools_schema"],
    )
