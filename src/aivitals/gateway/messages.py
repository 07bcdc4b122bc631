"""``POST /v1/messages``: Anthropic's Messages API, natively.

Anthropic's usage counts input the other way round from OpenAI's (``input_tokens`` leaves out
cache reads and writes; `aivitals.usage.usage_from_anthropic` adds them back), its stop reasons
have their own names (`aivitals.finish`), and a stream says its usage twice: ``message_start``
carries the input counts, ``message_delta`` the final counts, cumulative (today's API repeats the
input counts there). The relay takes each field from the latest event that has it, never a sum,
so nothing is counted twice:

>>> relay = MESSAGES.relay()
>>> _ = relay.feed(b'event: message_start\\ndata: {"type":"message_start","message":{"id":"msg_1",'
...     b'"model":"claude-x","usage":{"input_tokens":10,"cache_read_input_tokens":100,'
...     b'"output_tokens":1,"service_tier":"standard"}}}\\n\\n')
>>> relay.tokens.input_tokens, relay.estimated
(110, True)
>>> _ = relay.feed(b'event: message_delta\\ndata: {"type":"message_delta","delta":{"stop_reason":'
...     b'"max_tokens"},"usage":{"input_tokens":10,"cache_read_input_tokens":100,"output_tokens":7}}'
...     b'\\n\\nevent: message_stop\\ndata: {"type":"message_stop"}\\n\\n')
>>> relay.tokens.input_tokens, relay.tokens.output_tokens, relay.finish_reason, relay.done
(110, 7, 'length', True)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.responses import JSONResponse, Response

from aivitals.content import CallContent
from aivitals.extract.messages import messages_content, messages_stream_content
from aivitals.finish import finish_reason_from_anthropic
from aivitals.gateway.dialect import Answer, Dialect, NativeRelay, text_of
from aivitals.usage import usage_from_anthropic

# Anthropic's error types by status, for the gateway's own refusals.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
}
_KEPT_HEADERS = frozenset({"retry-after", "x-should-retry"})


class _MessagesRelay(NativeRelay):
    skimmed = (b"content_block_delta", b"ping")
    counted = (b"content_block_delta",)

    def __init__(self) -> None:
        super().__init__()
        self._usage: dict[str, Any] = {}

    def on_event(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                self.model = text_of(message.get("model")) or self.model
                self.response_id = text_of(message.get("id"))
                self._take(message.get("usage"))
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.finish_reason = finish_reason_from_anthropic(delta["stop_reason"])
            if self._take(event.get("usage")):
                self.estimated = False
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            error = event.get("error")
            self.error = error if isinstance(error, dict) else {"message": str(error)}
        elif kind == "content_block_delta":  # when the upstream sends no event: lines
            self.content_events += 1

    def _take(self, usage: Any) -> bool:
        if not isinstance(usage, dict):
            return False
        # Cumulative counts: the latest value of each field wins.
        self._usage.update((k, v) for k, v in usage.items() if v is not None)
        tier = self._usage.get("service_tier")
        self.service_tier = tier if isinstance(tier, str) and tier else None
        self.tokens = usage_from_anthropic(self._usage)
        return True


class MessagesDialect(Dialect):
    """Anthropic's Messages API: ``max_tokens`` is required, as the API requires it."""

    name = "messages"
    path = "messages"
    upstream_api = "anthropic"
    required = "messages"
    output_limit = "max_tokens"

    def check(self, body: Mapping[str, Any]) -> tuple[str, str] | None:
        limit = body.get("max_tokens")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            return "max_tokens: a whole number >= 1 is required", "max_tokens"
        return None

    def read(self, parsed: Mapping[str, Any]) -> Answer:
        usage = parsed.get("usage")
        tier = usage.get("service_tier") if isinstance(usage, dict) else None
        stop = parsed.get("stop_reason")
        return Answer(
            usage=usage_from_anthropic(usage if isinstance(usage, dict) else {}),
            response_model=text_of(parsed.get("model")),
            finish_reason=finish_reason_from_anthropic(stop) if isinstance(stop, str) else None,
            service_tier=text_of(tier),
            response_id=text_of(parsed.get("id")),
        )

    def relay(self) -> NativeRelay:
        return _MessagesRelay()

    def content(
        self, request: Mapping[str, Any], parsed: Mapping[str, Any], finish_reason: str | None
    ) -> CallContent:
        return messages_content(request, parsed, finish_reason=finish_reason)

    def stream_content(
        self, request: Mapping[str, Any], events: list[dict[str, Any]], finish_reason: str | None
    ) -> CallContent:
        return messages_stream_content(request, events, finish_reason=finish_reason)

    def reshape(self, response: JSONResponse) -> Response:
        """``{"type": "error", "error": {"type", "message"}}``, as the anthropic client parses
        it; the status and the retry headers stay."""
        try:
            error = json.loads(bytes(response.body))["error"]
            message = str(error.get("message") or "")
        except (ValueError, KeyError, TypeError, AttributeError):
            return response
        kind = _ERROR_TYPES.get(response.status_code) or (
            "api_error" if response.status_code >= 500 else "invalid_request_error"
        )
        body = {"type": "error", "error": {"type": kind, "message": message}}
        headers = {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS}
        return Response(
            msgspec.json.encode(body),
            response.status_code,
            headers=headers,
            media_type="application/json",
        )


MESSAGES = MessagesDialect()
