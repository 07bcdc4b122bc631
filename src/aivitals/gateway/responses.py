"""``POST /v1/responses``: OpenAI's Responses API, natively.

The usage is OpenAI's convention under the Responses API's names (`aivitals.usage` reads both);
server-side tool uses are counted from ``tool_usage`` when the answer has it, else from its
``web_search_call`` and ``file_search_call`` output items. A stream's last event
(``response.completed``, ``response.incomplete`` or ``response.failed``) carries the whole
response, usage included, so only the first and the last events are decoded:

>>> answer = RESPONSES.read({"id": "resp_1", "model": "gpt-4o", "status": "incomplete",
...     "incomplete_details": {"reason": "max_output_tokens"}, "service_tier": "flex",
...     "output": [{"type": "web_search_call"}], "usage": {"input_tokens": 20, "output_tokens": 16}})
>>> answer.finish_reason, answer.service_tier, answer.usage.server_tool_uses
('length', 'flex', {'web_search': 1})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from aivitals.content import CallContent
from aivitals.extract.responses import responses_content, responses_stream_content
from aivitals.finish import finish_reason_from_responses
from aivitals.gateway.dialect import Answer, Dialect, NativeRelay, text_of
from aivitals.usage import TokenUsage, tool_uses_from_openai_response, usage_from_openai

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _finish(response: Mapping[str, Any]) -> str | None:
    details = response.get("incomplete_details")
    output = response.get("output")
    return finish_reason_from_responses(
        response.get("status"),
        details.get("reason") if isinstance(details, dict) else None,
        output if isinstance(output, list) else (),
    )


def _usage(response: Mapping[str, Any]) -> TokenUsage | None:
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    tokens = usage_from_openai(usage)
    tools = tool_uses_from_openai_response(response)
    return msgspec.structs.replace(tokens, server_tool_uses=tools) if tools else tokens


class _ResponsesRelay(NativeRelay):
    skimmed = (
        b"response.output_text.delta",
        b"response.refusal.delta",
        b"response.reasoning_summary_text.delta",
        b"response.function_call_arguments.delta",
        b"response.in_progress",
    )
    counted = skimmed[:-1]

    def on_event(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "response.created" or kind in _TERMINAL:
            response = event.get("response")
            if not isinstance(response, dict):
                return
            self.model = text_of(response.get("model")) or self.model
            self.response_id = text_of(response.get("id")) or self.response_id
            self.service_tier = text_of(response.get("service_tier")) or self.service_tier
            if kind not in _TERMINAL:
                return
            self.done = True
            tokens = _usage(response)
            if tokens is not None:
                self.tokens, self.estimated = tokens, False
            self.finish_reason = _finish(response)
            error = response.get("error")
            if kind == "response.failed":
                self.error = error if isinstance(error, dict) else {"message": "response failed"}
        elif kind == "error":
            self.error = {"code": event.get("code"), "message": event.get("message")}
        elif kind.endswith(".delta"):  # when the upstream sends no event: lines
            self.content_events += 1


class ResponsesDialect(Dialect):
    """OpenAI's Responses API."""

    name = "responses"
    path = "responses"
    upstream_api = "openai"
    required = "input"
    output_limit = "max_output_tokens"

    def read(self, parsed: Mapping[str, Any]) -> Answer:
        return Answer(
            usage=_usage(parsed) or TokenUsage(),
            response_model=text_of(parsed.get("model")),
            finish_reason=_finish(parsed),
            service_tier=text_of(parsed.get("service_tier")),
            response_id=text_of(parsed.get("id")),
        )

    def relay(self) -> NativeRelay:
        return _ResponsesRelay()

    def content(
        self, request: Mapping[str, Any], parsed: Mapping[str, Any], finish_reason: str | None
    ) -> CallContent:
        return responses_content(request, parsed, finish_reason=finish_reason)

    def stream_content(
        self, request: Mapping[str, Any], events: list[dict[str, Any]], finish_reason: str | None
    ) -> CallContent:
        return responses_stream_content(request, events, finish_reason=finish_reason)


RESPONSES = ResponsesDialect()
