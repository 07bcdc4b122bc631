"""Where the text sits in a request or an answer of each route: `Slot`\\s a guardrail reads and
rewrites in place.

A request's slots are what the model reads: every message's text (a string, or the text parts of
a list), the system prompt and instructions, a completion's prompt, an embedding's input. An
answer's slots are what the client reads: each choice's message or text, each text block, each
output text part. Token-id prompts, images, audio and tool-call arguments hold no slot.

>>> body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
>>> [(slot.param, slot.text) for slot in request_slots("chat", body)]
[('messages[0].content[0].text', 'hi')]
>>> request_slots("chat", body)[0].set("hello")
>>> body["messages"][0]["content"][0]["text"]
'hello'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Slot:
    """``container[key]`` is a string; ``param`` names it as a client would (``messages[1].content``)."""

    container: Any
    key: str | int
    param: str

    @property
    def text(self) -> str:
        value: str = self.container[self.key]
        return value

    def set(self, text: str) -> None:
        self.container[self.key] = text


def request_slots(route: str, body: Mapping[str, Any]) -> list[Slot]:
    """The text the model reads in a request to ``route`` (chat, completions, embeddings,
    messages, responses)."""
    found: list[Slot] = []
    if route in ("chat", "messages"):
        if route == "messages":
            _text_or_parts(found, body, "system", "system")
        messages = body.get("messages")
        if isinstance(messages, list):
            for index, message in enumerate(messages):
                if isinstance(message, dict):
                    _content(found, message, f"messages[{index}]")
    elif route in ("completions", "embeddings"):
        field = "prompt" if route == "completions" else "input"
        _strings(found, body, field, field)
    elif route == "responses":
        _strings(found, body, "instructions", "instructions")
        given = body.get("input")
        if isinstance(given, str):
            found.append(Slot(body, "input", "input"))
        elif isinstance(given, list):
            for index, item in enumerate(given):
                if isinstance(item, dict):
                    _content(found, item, f"input[{index}]")
    return found


def answer_slots(route: str, parsed: Mapping[str, Any]) -> list[Slot]:
    """The text the client reads in a whole answer from ``route``."""
    found: list[Slot] = []
    if route in ("chat", "completions"):
        choices = parsed.get("choices")
        for index, choice in enumerate(choices if isinstance(choices, list) else ()):
            if not isinstance(choice, dict):
                continue
            if route == "completions":
                _strings(found, choice, "text", f"choices[{index}].text")
            elif isinstance(choice.get("message"), dict):
                _strings(found, choice["message"], "content", f"choices[{index}].message.content")
    elif route == "messages":
        _parts(found, parsed.get("content"), "content")
    elif route == "responses":
        output = parsed.get("output")
        for index, item in enumerate(output if isinstance(output, list) else ()):
            if isinstance(item, dict):
                _parts(found, item.get("content"), f"output[{index}].content")
    return found


def joined(slots: Iterable[Slot]) -> str:
    """The slots' text as one answer (a JSON schema judges it whole)."""
    return "".join(slot.text for slot in slots)


def _content(found: list[Slot], message: dict[str, Any], where: str) -> None:
    _text_or_parts(found, message, "content", f"{where}.content")


def _text_or_parts(found: list[Slot], owner: Mapping[str, Any], key: str, where: str) -> None:
    value = owner.get(key)
    if isinstance(value, str):
        found.append(Slot(owner, key, where))
    else:
        _parts(found, value, where)


def _parts(found: list[Slot], parts: Any, where: str) -> None:
    if not isinstance(parts, list):
        return
    for index, part in enumerate(parts):
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):  # text, input_text, output_text
            found.append(Slot(part, "text", f"{where}[{index}].text"))
        elif part.get("type") == "tool_result":  # Anthropic: what a tool answered
            _text_or_parts(found, part, "content", f"{where}[{index}].content")


def _strings(found: list[Slot], owner: Mapping[str, Any], key: str, where: str) -> None:
    value = owner.get(key)
    if isinstance(value, str):
        found.append(Slot(owner, key, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):  # token-id prompts (lists of ints) hold no text
                found.append(Slot(value, index, f"{where}[{index}]"))
