"""Anthropic's Messages API: request (``system``, ``messages``, ``tools``), whole message (text
and ``tool_use`` blocks, the arguments being the JSON of ``input``), and a stream's events.

A refusal is Anthropic's ``stop_reason`` (``refusal``), which the call's finish reason already
says (`aivitals.finish`); there is no refusal text field.

>>> message = {"content": [{"type": "text", "text": "Hello"},
...     {"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}}]}
>>> content = messages_content({"messages": []}, message, finish_reason="tool_calls")
>>> content.output_text, content.tool_calls[0].arguments
('Hello', '{"city": "Paris"}')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aivitals.content import CallContent, ToolCallContent
from aivitals.extract.fields import (
    arguments_text,
    clip,
    field,
    model_schema,
    prompt_messages,
    schema_dict,
)


def messages_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The `CallContent` fields a Messages request says."""
    tools: dict[str, dict[str, Any]] = {}
    for tool in request.get("tools") or ():
        name = field(tool, "name")
        schema = schema_dict(field(tool, "input_schema"))
        if isinstance(name, str) and schema is not None:
            tools[name] = schema
    found: dict[str, Any] = {
        "messages": prompt_messages(request.get("messages"), system=request.get("system")),
        "tools_schema": tools,
    }
    # Structured outputs: output_config.format (the API's), output_format (the beta's, or the
    # client's parse() given a pydantic model).
    form = field(request.get("output_config"), "format") or request.get("output_format")
    if field(form, "type") == "json_schema":
        found["response_format"] = "json_schema"
        found["json_schema"] = schema_dict(field(form, "schema"))
    elif isinstance(form, type):
        found["response_format"] = "json_schema"
        found["json_schema"] = model_schema(form)
    return found


def messages_content(
    request: Mapping[str, Any], message: object, *, finish_reason: str | None
) -> CallContent:
    """A whole ``Message``."""
    texts: list[str] = []
    calls: list[ToolCallContent] = []
    for block in field(message, "content") or ():
        kind = field(block, "type")
        if kind == "text" and isinstance(field(block, "text"), str):
            texts.append(field(block, "text"))
        elif kind == "tool_use":
            calls.append(
                ToolCallContent(
                    name=str(field(block, "name") or ""),
                    arguments=arguments_text(field(block, "input")),
                )
            )
    return _content(request, texts, tuple(calls), finish_reason)


def messages_stream_content(
    request: Mapping[str, Any], events: Iterable[object], *, finish_reason: str | None
) -> CallContent:
    """A stream: ``content_block_start`` opens a text or ``tool_use`` block, its deltas
    (``text_delta``, ``input_json_delta``) fill it, by the block's index."""
    texts: list[str] = []
    names: dict[int, str] = {}
    arguments: dict[int, list[str]] = {}
    for event in events:
        kind = field(event, "type")
        index = field(event, "index")
        index = index if isinstance(index, int) else 0
        if kind == "content_block_start":
            block = field(event, "content_block")
            if field(block, "type") == "tool_use":
                names[index] = str(field(block, "name") or "")
                arguments[index] = []
        elif kind == "content_block_delta":
            delta = field(event, "delta")
            delta_kind = field(delta, "type")
            if delta_kind == "text_delta" and isinstance(field(delta, "text"), str):
                texts.append(field(delta, "text"))
            elif delta_kind == "input_json_delta" and isinstance(field(delta, "partial_json"), str):
                arguments.setdefault(index, []).append(field(delta, "partial_json"))
    calls = tuple(
        ToolCallContent(name=names.get(i, ""), arguments=clip("".join(arguments[i])) or "")
        for i in sorted(arguments)
    )
    return _content(request, texts, calls, finish_reason)


def _content(
    request: Mapping[str, Any],
    texts: list[str],
    calls: tuple[ToolCallContent, ...],
    finish_reason: str | None,
) -> CallContent:
    asked = messages_request(request)
    return CallContent(
        messages=asked["messages"],
        output_text=clip("".join(texts)) if texts else None,
        tool_calls=calls,
        finish_reason=finish_reason,
        response_format=asked.get("response_format"),
        json_schema=asked.get("json_schema"),
        tools_schema=asked["tools_schema"],
    )
