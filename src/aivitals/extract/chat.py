"""OpenAI's chat completions (and legacy completions): request, whole answer, streamed chunks.

>>> content = chat_content(
...     {"messages": [{"role": "user", "content": "Hi"}],
...      "response_format": {"type": "json_object"}},
...     {"choices": [{"message": {"content": '{"a": 1}', "refusal": None}}]},
...     finish_reason="stop",
... )
>>> content.output_text, content.response_format, content.messages[0].text
('{"a": 1}', 'json_object', 'Hi')
>>> chunks = [{"choices": [{"delta": {"content": "Par"}}]}, {"choices": [{"delta": {"content": "is"}}]}]
>>> chat_stream_content({"messages": []}, chunks, finish_reason="stop").output_text
'Paris'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aivitals.content import CallContent, ResponseFormat, ToolCallContent
from aivitals.extract.fields import (
    MAX_TEXT_CHARS,
    clip,
    field,
    prompt_messages,
    schema_dict,
)


def chat_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The `CallContent` fields a chat (or completion) request says: its prompt, whether it
    asked for JSON and in which shape, its tools' parameter schemas."""
    messages = request.get("messages")
    prompt = request.get("prompt")
    found: dict[str, Any] = {
        "messages": prompt_messages(messages if messages is not None else prompt)
    }
    response_format = request.get("response_format")
    kind = field(response_format, "type")
    if kind in ("json_object", "json_schema"):
        found["response_format"] = kind
        if kind == "json_schema":
            found["json_schema"] = schema_dict(
                field(field(response_format, "json_schema"), "schema")
            )
    found["tools_schema"] = _tools(request.get("tools"))
    return found


def _tools(tools: object) -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    if not isinstance(tools, list | tuple):
        return schemas
    for tool in tools:
        function = field(tool, "function")
        name = field(function, "name")
        parameters = schema_dict(field(function, "parameters"))
        if isinstance(name, str) and parameters is not None:
            schemas[name] = parameters
    return schemas


def chat_content(
    request: Mapping[str, Any], response: object, *, finish_reason: str | None
) -> CallContent:
    """A whole chat completion (or legacy completion) answer, with its request."""
    choices = field(response, "choices") or ()
    choice = choices[0] if choices else None
    message = field(choice, "message")
    text = field(message, "content") if message is not None else field(choice, "text")
    refusal = field(message, "refusal")
    calls = tuple(
        ToolCallContent(
            name=str(field(field(call, "function"), "name") or ""),
            arguments=clip(str(field(field(call, "function"), "arguments") or "")) or "",
        )
        for call in field(message, "tool_calls") or ()
    )
    return _content(request, text, refusal, calls, finish_reason)


def chat_stream_content(
    request: Mapping[str, Any], chunks: Iterable[object], *, finish_reason: str | None
) -> CallContent:
    """A streamed answer assembled from its chunks (the first choice's deltas): text, refusal,
    and each tool call's name and argument pieces by their index."""
    texts: list[str] = []
    refusals: list[str] = []
    names: dict[int, str] = {}
    arguments: dict[int, list[str]] = {}
    size = 0
    for chunk in chunks:
        choices = field(chunk, "choices")
        if not choices:
            continue
        choice = choices[0]
        delta = field(choice, "delta")
        piece = field(delta, "content") if delta is not None else field(choice, "text")
        if isinstance(piece, str) and piece and size < MAX_TEXT_CHARS:
            texts.append(piece)
            size += len(piece)
        refused = field(delta, "refusal")
        if isinstance(refused, str) and refused:
            refusals.append(refused)
        for call in field(delta, "tool_calls") or ():
            index = field(call, "index")
            index = index if isinstance(index, int) else 0
            function = field(call, "function")
            name = field(function, "name")
            if isinstance(name, str) and name:
                names[index] = name
            part = field(function, "arguments")
            if isinstance(part, str):
                arguments.setdefault(index, []).append(part)
    calls = tuple(
        ToolCallContent(name=names.get(i, ""), arguments=clip("".join(arguments.get(i, ()))) or "")
        for i in sorted(names.keys() | arguments.keys())
    )
    text = "".join(texts) if texts else None
    return _content(request, text, "".join(refusals) or None, calls, finish_reason)


def _content(
    request: Mapping[str, Any],
    text: object,
    refusal: object,
    calls: tuple[ToolCallContent, ...],
    finish_reason: str | None,
) -> CallContent:
    asked = chat_request(request)
    response_format: ResponseFormat | None = asked.get("response_format")
    return CallContent(
        messages=asked["messages"],
        output_text=clip(text) if isinstance(text, str) else None,
        tool_calls=calls,
        refusal=clip(refusal) if isinstance(refusal, str) and refusal else None,
        finish_reason=finish_reason,
        response_format=response_format,
        json_schema=asked.get("json_schema"),
        tools_schema=asked["tools_schema"],
    )
