"""Reading a field of an SDK object or a decoded JSON dict alike, and prompt text from parts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aivitals.content import ContentMessage

MAX_TEXT_CHARS = 200_000
"""Text kept per message and per answer: enough for any evaluator, bounded for the worker."""


def field(obj: object, name: str) -> Any:
    """``obj[name]`` for a mapping, ``obj.name`` for an object; None when absent."""
    # Decoded JSON is plain dicts: checked first, since `isinstance` against the `Mapping` ABC
    # costs several times a type check, and a streamed answer reads a hundred fields or more.
    if type(obj) is dict:
        return obj.get(name)
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def text_of_parts(
    content: object, kinds: Iterable[str] = ("text", "input_text", "output_text")
) -> str:
    """A message's text: a string as it is, or the text parts of a list of parts joined."""
    if isinstance(content, str):
        return content[:MAX_TEXT_CHARS]
    if not isinstance(content, list | tuple):
        return ""
    wanted = frozenset(kinds)
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        if field(part, "type") in wanted:
            text = field(part, "text")
            if isinstance(text, str):
                texts.append(text)
        elif field(part, "type") == "tool_result":
            # Anthropic's tool results are prompt text too (what the tool said back).
            texts.append(text_of_parts(field(part, "content")))
    return "\n".join(texts)[:MAX_TEXT_CHARS]


def prompt_messages(messages: object, *, system: object = None) -> tuple[ContentMessage, ...]:
    """The prompt's messages as (role, text), a system text first when there is one."""
    found: list[ContentMessage] = []
    system_text = text_of_parts(system)
    if system_text:
        found.append(ContentMessage(role="system", text=system_text))
    if isinstance(messages, str):
        found.append(ContentMessage(role="user", text=messages[:MAX_TEXT_CHARS]))
        return tuple(found)
    if not isinstance(messages, list | tuple):
        return tuple(found)
    for message in messages:
        role = field(message, "role")
        if not isinstance(role, str):
            continue
        found.append(ContentMessage(role=role, text=text_of_parts(field(message, "content"))))
    return tuple(found)


def arguments_text(arguments: object) -> str:
    """Tool-call arguments as the JSON text the model wrote (Anthropic gives them parsed)."""
    if isinstance(arguments, str):
        return arguments[:MAX_TEXT_CHARS]
    if arguments is None:
        return ""
    try:
        return json.dumps(arguments, ensure_ascii=False)[:MAX_TEXT_CHARS]
    except (TypeError, ValueError):
        return ""


def schema_dict(value: object) -> dict[str, Any] | None:
    """A JSON Schema given as a dict (a pydantic class or anything else is not read)."""
    return dict(value) if isinstance(value, Mapping) else None


def model_schema(model: type) -> dict[str, Any] | None:
    """The JSON Schema of a pydantic model class (a client's ``parse()``); None for any other."""
    build = getattr(model, "model_json_schema", None)
    if not callable(build):
        return None
    try:
        return schema_dict(build())
    except Exception:  # a model pydantic cannot describe: no schema to check against
        return None


def clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_TEXT_CHARS]
