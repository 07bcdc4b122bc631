"""A provider-native route's differences from chat completions: `Dialect`, and what its answers
say (`Answer`), whole or streamed (`NativeRelay`).

The gateway's stages (keys, limits, budgets, cache, spans, recording) are the same for every
route; a dialect only says how a body is checked, how the upstream's answer reads (usage, finish
reason, service tier) and what the gateway's own errors look like to that API's clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.responses import JSONResponse, Response

from aivitals.content import CallContent
from aivitals.gateway.sse import complete_events
from aivitals.gateway.upstreams import Api
from aivitals.usage import TokenUsage

_SEPARATOR = b"\n\n"
_EVENT = b"event:"
_DATA = b"data:"
# Checks an event is well-formed JSON without building it: skimmed events are never decoded.
_validate = msgspec.json.Decoder(msgspec.Raw).decode


@dataclass(frozen=True, slots=True)
class Answer:
    """What a whole answer says about its call."""

    usage: TokenUsage
    response_model: str | None
    finish_reason: str | None
    service_tier: str | None
    response_id: str | None


class NativeRelay:
    """Watches a named-event SSE stream (``event: <type>`` / ``data: {json}``) on its way
    through, forwarding each complete event as it is; subclasses read the events they need.

    It has the attributes the proxy reads of a chat stream's relay (``model``, ``finish_reason``,
    ``error``, ``malformed``, ``done``, ``content_events``, ``response_id``), and the usage as
    aivitals counts it: ``tokens`` (None until the stream said any) and ``estimated`` (True while
    the stream has not given its final counts).
    """

    skimmed: tuple[bytes, ...] = ()
    """Event types passed on without being decoded (checked for JSON only)."""
    counted: tuple[bytes, ...] = ()
    """Of those, the ones that carry content (counted, for an estimate if the usage never comes)."""

    def __init__(self) -> None:
        self.tokens: TokenUsage | None = None
        self.estimated = True
        self.model: str | None = None
        self.response_id: str | None = None
        self.finish_reason: str | None = None
        self.service_tier: str | None = None
        self.error: dict[str, Any] | None = None
        self.content_events = 0
        self.done = False
        self.malformed: str | None = None
        self._buffer = b""
        self._decode = msgspec.json.Decoder().decode

    def feed(self, data: bytes) -> bytes:
        complete, self._buffer = complete_events(self._buffer, data)
        if not complete:
            return b""
        for event in complete.split(_SEPARATOR)[:-1]:
            self._read(event)
        return complete

    def usage_now(self) -> TokenUsage | None:
        """The usage to record: the stream's final counts, or (``estimated``) what it said so
        far with at least one output token per content event."""
        tokens = self.tokens
        if tokens is None or not self.estimated or tokens.output_tokens >= self.content_events:
            return tokens
        return msgspec.structs.replace(tokens, output_tokens=self.content_events)

    def flush(self) -> bytes:
        """Whatever is left when the upstream closes (a stream cut mid-event)."""
        rest, self._buffer = self._buffer, b""
        return rest

    def _read(self, event: bytes) -> None:
        kind = b""
        payload = b""
        for line in event.split(b"\n"):
            if line.startswith(_EVENT):
                kind = line[len(_EVENT) :].strip()
            elif line.startswith(_DATA):
                payload = line[len(_DATA) :].strip()
        if not payload:
            return
        if kind in self.skimmed:
            if kind in self.counted:
                self.content_events += 1
            if self.malformed is None:
                try:
                    _validate(payload)
                except (msgspec.DecodeError, RecursionError) as exc:
                    self._bad(f"the upstream sent a stream event that is not JSON: {exc}")
            return
        try:
            decoded = self._decode(payload)
        except (msgspec.DecodeError, RecursionError) as exc:  # msgspec bounds depth by recursion
            self._bad(f"the upstream sent a stream event that is not JSON: {exc}")
            return
        if not isinstance(decoded, dict):
            self._bad(
                f"the upstream sent a stream event that is not a JSON object: {payload[:40]!r}"
            )
            return
        name = decoded.get("type")
        self.on_event(name if isinstance(name, str) else kind.decode("latin-1"), decoded)

    def _bad(self, reason: str) -> None:
        if self.malformed is None:
            self.malformed = reason

    def on_event(self, kind: str, event: dict[str, Any]) -> None:
        """Read one decoded event (``kind`` is its ``type``)."""
        raise NotImplementedError


class Dialect:
    """A native route: subclasses set the class attributes and implement `read` and `relay`."""

    name: str
    """The route's name: the cache key's and ``cache.routes``' (``messages``, ``responses``)."""
    path: str
    """The upstream path under its base URL, and the route under ``/v1/``."""
    upstream_api: Api
    """The kind of upstream preferred for this route's models."""
    required: str
    """The body field without which the request is refused (400)."""
    output_limit: str
    """The body field that caps the output tokens (budgets reserve by it)."""

    def check(self, body: Mapping[str, Any]) -> tuple[str, str] | None:
        """(message, param) when the body cannot be sent; None when it can."""
        return None

    def read(self, parsed: Mapping[str, Any]) -> Answer:
        """What a whole (2xx, JSON object) answer says."""
        raise NotImplementedError

    def relay(self) -> NativeRelay:
        """A fresh relay for one streamed answer."""
        raise NotImplementedError

    def content(
        self, request: Mapping[str, Any], parsed: Mapping[str, Any], finish_reason: str | None
    ) -> CallContent:
        """What a whole answer and its request said (on the quality worker)."""
        raise NotImplementedError

    def stream_content(
        self, request: Mapping[str, Any], events: list[dict[str, Any]], finish_reason: str | None
    ) -> CallContent:
        """What a streamed answer said, from its decoded events (on the quality worker)."""
        raise NotImplementedError

    def reshape(self, response: JSONResponse) -> Response:
        """The gateway's own error reply (OpenAI's shape) as this API's clients expect it."""
        return response


def text_of(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
