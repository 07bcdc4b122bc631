"""Output guardrails over a streamed answer: `StreamGuard` rewrites the events the relay passes on.

A stream cannot be taken back once sent, so a guardrail that redacts or blocks holds back the
last `WINDOW_CHARS` characters of each text (a choice, a content block, an output part) and
lets out only what lies before them, scanning each time `STEP_CHARS` more have come. A match shorter than the window is therefore whole inside
the held text when it is found: it is masked before any of it leaves (a card number split over
three chunks included), or, for a block, the stream ends there with an error event and the client
has seen the text before the held window and never the match. A block on a JSON schema can only
judge the whole text: it holds all of it until the end. Flags read the assembled text at the end
and change nothing.

The held text goes out when its choice or block ends (in its finish event, or in a delta event
inserted just before the block's end), or when the stream ends.

>>> from aivitals.gateway.guardrail_settings import GuardrailSettings
>>> from aivitals.gateway.guardrails import Guardrail
>>> cards = Guardrail(GuardrailSettings(name="cards", on="output", detectors=["card"],
...                                     action="redact"))
>>> guard = StreamGuard([cards], "chat")
>>> def event(text, end=None):
...     choice = {"index": 0, "delta": {"content": text}, "finish_reason": end}
...     return b'data: ' + msgspec.json.encode({"choices": [choice]}) + b'\\n\\n'
>>> sent = guard.feed(event("Card 4111 11") + event("11 1111 1111, thanks")) + guard.feed(
...     event("", end="stop"))
>>> b"4111" in sent, b"[card]" in sent, guard.verdict().tag
(False, True, 'cards:redact')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from aivitals.detectors.finding import Finding
from aivitals.gateway.body_text import Slot, answer_slots
from aivitals.gateway.guardrails import Guardrail, Verdict, check, describe, mask
from aivitals.gateway.sse import complete_events

WINDOW_CHARS = 256
"""Held back of each streamed text while a redacting or blocking guardrail watches it: longer
than a card number, an IBAN, a phone number or a provider's API key."""
STEP_CHARS = 128
"""How much new text the window gathers before it is scanned again and its head let out: the
client reads the answer `WINDOW_CHARS` to `WINDOW_CHARS` + `STEP_CHARS` characters late."""
CONTEXT_CHARS = 64
"""Of the text already sent, how much the detectors read again before the held text (a phone
number's cue word, a card's preceding digit)."""

_SEPARATOR = b"\n\n"
_TERMINAL = frozenset(
    {
        "message_delta",
        "message_stop",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

Key = tuple[int, int]


class StreamGuard:
    """The output guardrails that apply to one streamed answer of ``route``."""

    def __init__(self, guardrails: Sequence[Guardrail], route: str) -> None:
        self.route = route
        self.watching = tuple(g for g in guardrails if g.action != "flag" and g.schema is None)
        self.at_end = tuple(g for g in guardrails if g not in self.watching)
        # A block on a schema must see the whole text before any of it goes.
        self.window = (
            None
            if any(g.schema is not None and g.action == "block" for g in guardrails)
            else WINDOW_CHARS
        )
        self.holding = bool(self.watching) or self.window is None
        self.acted: dict[str, str] = {}
        self.blocked: Verdict | None = None
        self._pending: dict[Key, str] = {}
        self._raw: dict[Key, str] = {}
        """What each text said, as the upstream sent it (the flags read it)."""
        self._sent: dict[Key, str] = {}
        """What each text said, as the client got it."""
        self._last: dict[Key, dict[str, Any]] = {}
        self._buffer = b""

    # -- the events ------------------------------------------------------------------------------

    def feed(self, out: bytes) -> bytes:
        """Whole events in (what the relay passes on), the events to send out."""
        if self.blocked is not None:
            return b""
        complete, self._buffer = complete_events(self._buffer, out)
        parts: list[bytes] = []
        for event in complete.split(_SEPARATOR)[:-1]:
            parts.append(self._event(event))
            if self.stopped():
                break
        return b"".join(parts)

    def close(self, rest: bytes) -> bytes:
        """At the stream's end: the texts still held (redacted), then ``rest`` (a cut event)."""
        if self.blocked is not None:
            return b""
        held = [self._synthesised(key) for key in list(self._pending)]
        if self.stopped():
            return self._error()
        return b"".join(held) + self._buffer + rest

    def stopped(self) -> bool:
        """Whether a guardrail blocked: the stream ends (its error event is out)."""
        return self.blocked is not None

    def verdict(self) -> Verdict:
        """What the guardrails decided, the flags and schemas read on the assembled text."""
        if self.blocked is not None:
            return self.blocked
        verdict = Verdict(acted=dict(self.acted))
        if self.at_end:
            slots = [Slot({"text": self._raw[key]}, "text", "") for key in sorted(self._raw)]
            late = check(self.at_end, slots)
            verdict.acted.update(late.acted)
            if late.blocked is not None:
                verdict.blocked, verdict.param, verdict.what = late.blocked, None, late.what
        return verdict

    def _event(self, event: bytes) -> bytes:
        kind, payload = _fields(event)
        if self._pending and (payload is None or kind in _TERMINAL):
            # The stream ends without having ended its text (no finish reason, no block end):
            # what is held goes out now, before the end the client stops reading at.
            held = b"".join(self._synthesised(key) for key in list(self._pending))
            if self.blocked is not None:
                return self._error()
            return held + self._event(event)
        if payload is None:
            return event + _SEPARATOR
        try:
            data = _decode(payload)
        except (msgspec.DecodeError, RecursionError):
            return event + _SEPARATOR
        if not isinstance(data, dict):
            return event + _SEPARATOR
        before = b""
        changed = False
        if self.route in ("chat", "completions"):
            changed = self._choices(data)
        elif self.route == "messages":
            changed, before = self._messages(data)
        elif self.route == "responses":
            changed, before = self._responses(kind or data.get("type"), data)
        if self.blocked is not None:
            return self._error()
        if not changed:
            return before + event + _SEPARATOR
        head = f"event: {kind}\n".encode() if kind else b""
        return before + head + b"data: " + _encode(data) + _SEPARATOR

    def _choices(self, data: dict[str, Any]) -> bool:
        choices = data.get("choices")
        changed = False
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index")
            key = (index if isinstance(index, int) else 0, 0)
            owner = choice if self.route == "completions" else choice.get("delta")
            field = "text" if self.route == "completions" else "content"
            if not isinstance(owner, dict):
                if choice.get("finish_reason") is None or key not in self._pending:
                    continue
                owner = choice["delta"] = {}  # a finish chunk without a delta: give it one
            text = owner.get(field)
            if isinstance(text, str) and text:
                let_out = self._push(key, text, final=False)
                if let_out != text:
                    owner[field] = let_out
                    changed = True
            if choice.get("finish_reason") is not None and key in self._pending:
                rest = self._push(key, "", final=True)
                owner[field] = (owner.get(field) or "") + rest
                changed = True
        return changed

    def _messages(self, data: dict[str, Any]) -> tuple[bool, bytes]:
        kind = data.get("type")
        index = data.get("index")
        key = (index if isinstance(index, int) else 0, 0)
        if kind == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("text"), str):
                self._last[key] = data
                text = delta["text"]
                delta["text"] = self._push(key, text, final=False)
                return delta["text"] != text, b""
        elif kind == "content_block_stop" and key in self._pending:
            return False, self._synthesised(key)
        return False, b""

    def _responses(self, kind: Any, data: dict[str, Any]) -> tuple[bool, bytes]:
        output, content = data.get("output_index"), data.get("content_index")
        key = (output if isinstance(output, int) else 0, content if isinstance(content, int) else 0)
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            self._last[key] = data
            text = data["delta"]
            data["delta"] = self._push(key, text, final=False)
            return data["delta"] != text, b""
        before = self._synthesised(key) if kind == "response.output_text.done" else b""
        if kind == "response.output_text.done" and key in self._sent:
            data["text"] = self._sent[key]
            return True, before
        part = data.get("part")
        if (
            kind == "response.content_part.done"
            and isinstance(part, dict)
            and key in self._sent
            and isinstance(part.get("text"), str)
        ):
            part["text"] = self._sent[key]
            return True, before
        if kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            return self._whole_item(key[0], data["item"]), before
        response = data.get("response")
        if isinstance(response, dict) and isinstance(response.get("output"), list):
            changed = False
            for position, item in enumerate(response["output"]):
                if isinstance(item, dict):
                    changed = self._whole_item(position, item) or changed
            return changed, before
        return False, before

    def _whole_item(self, output_index: int, item: dict[str, Any]) -> bool:
        changed = False
        for slot in answer_slots("messages", item):  # an output item's content parts
            content_index = int(slot.param.rsplit("[", 1)[1].split("]")[0])
            sent = self._sent.get((output_index, content_index))
            if sent is not None and slot.text != sent:
                slot.set(sent)
                changed = True
        return changed

    # -- the held text ---------------------------------------------------------------------------

    def _push(self, key: Key, text: str, *, final: bool) -> str:
        """Add ``text`` to ``key``'s held text; what of it may go out now, masked."""
        self._raw[key] = self._raw.get(key, "") + text
        if not self.holding:
            return text
        pending = self._pending.get(key, "") + text
        if not final and (self.window is None or len(pending) < self.window + STEP_CHARS):
            # Scanned a step at a time, not at every delta (a few characters each): the
            # detectors read the whole window, and a digit-dense one costs the phone matcher
            # milliseconds.
            self._pending[key] = pending
            return ""
        sent_raw = self._raw[key][: len(self._raw[key]) - len(pending)]
        context = len(sent_raw[-CONTEXT_CHARS:])
        window = sent_raw[-CONTEXT_CHARS:] + pending if context else pending
        findings: list[Finding] = []
        spans: list[tuple[int, int]] = []
        for guardrail in self.watching:
            found, other, first = guardrail.matches(window)
            # In the held text's offsets; what lies in the context has gone out already.
            mine = [
                Finding(f.kind, max(0, f.start - context), f.end - context, f.detail)
                for f in found
                if f.end > context
            ]
            theirs = [(max(0, s - context), e - context) for s, e in other if e > context]
            if not (mine or theirs):
                continue
            self.acted[guardrail.name] = guardrail.action
            if guardrail.action == "block":
                self._block(guardrail, first)
                return ""
            findings.extend(mine)
            spans.extend(theirs)
        if final and self.window is None:
            for guardrail in self.at_end:
                if guardrail.action == "block" and guardrail.misfits(self._raw[key]):
                    self.acted[guardrail.name] = guardrail.action
                    self._block(guardrail, "json_schema")
                    return ""
        if final or self.window is None:  # the window is None only while held whole
            cut = len(pending)
        else:
            cut = max(0, len(pending) - self.window)
            # Never cut through a match: it goes out whole and masked, or not yet.
            for start, end in [(f.start, f.end) for f in findings] + spans:
                if start < cut < end:
                    cut = start
        masked = mask(
            pending[:cut],
            [f for f in findings if f.end <= cut],
            [(s, e) for s, e in spans if e <= cut],
        )
        if cut < len(pending):
            self._pending[key] = pending[cut:]
        else:
            self._pending.pop(key, None)
        self._sent[key] = self._sent.get(key, "") + masked
        return masked

    def _block(self, guardrail: Guardrail, first: str | None) -> None:
        self.blocked = Verdict(acted=dict(self.acted), blocked=guardrail, what=describe(first))

    def _synthesised(self, key: Key) -> bytes:
        """A delta event carrying ``key``'s held text, for a stream whose block ends now."""
        rest = self._push(key, "", final=True)
        if self.blocked is not None or not rest:
            return b""
        template = self._last.get(key)
        if self.route in ("chat", "completions"):
            field = {"text": rest} if self.route == "completions" else {"delta": {"content": rest}}
            return b"data: " + _encode({"choices": [{"index": key[0], **field}]}) + _SEPARATOR
        if self.route == "messages":
            body = {
                "type": "content_block_delta",
                "index": key[0],
                "delta": {"type": "text_delta", "text": rest},
            }
            return b"event: content_block_delta\ndata: " + _encode(body) + _SEPARATOR
        body = {
            **(
                template
                or {
                    "type": "response.output_text.delta",
                    "output_index": key[0],
                    "content_index": key[1],
                }
            ),
            "delta": rest,
        }
        return b"event: response.output_text.delta\ndata: " + _encode(body) + _SEPARATOR

    def _error(self) -> bytes:
        assert self.blocked is not None
        message = self.blocked.message("output")
        error = {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "content_filter",
        }
        if self.route == "messages":
            body: dict[str, Any] = {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": message},
            }
            return b"event: error\ndata: " + _encode(body) + _SEPARATOR
        if self.route == "responses":
            body = {
                "type": "error",
                "code": "content_filter",
                "message": message,
                "param": None,
                "error": error,
            }
            return b"event: error\ndata: " + _encode(body) + _SEPARATOR
        return b"data: " + _encode({"error": error}) + _SEPARATOR


def _fields(event: bytes) -> tuple[str | None, bytes | None]:
    kind: str | None = None
    payload: bytes | None = None
    for line in event.split(b"\n"):
        if line.startswith(b"event:"):
            kind = line[6:].strip().decode("latin-1")
        elif line.startswith(b"data:"):
            payload = line[5:].strip()
    if payload == b"[DONE]":
        payload = None
    return kind, payload
