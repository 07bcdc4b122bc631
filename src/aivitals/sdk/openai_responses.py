"""OpenAI's Responses API (``client.responses.create`` and ``.stream``), as aivitals records it.

A response carries its usage in the Responses API's names (``input_tokens`` with
``input_tokens_details.cached_tokens`` and ``cache_write_tokens``, ``output_tokens`` with
``output_tokens_details.reasoning_tokens``), its outcome in ``status`` and
``incomplete_details.reason``, the tier that served it in ``service_tier``, and its server-side
tool uses as output items (``web_search_call``, ``file_search_call``) and, for web searches, as
the billable count ``tool_usage.web_search.num_requests`` (both read by
`aivitals.usage.tool_uses_from_openai_response`). A stream says all of it in its last
event (``response.completed``, ``response.incomplete`` or ``response.failed``).

Its outcome is read by `aivitals.finish.finish_reason_from_responses`, as the gateway's is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from aivitals.content import CallContent
from aivitals.estimate import estimate_prompt_tokens, estimate_text_tokens
from aivitals.extract.responses import responses_content, responses_stream_content
from aivitals.finish import finish_reason_from_responses
from aivitals.sdk.streams import StreamWatch
from aivitals.sdk.track import TrackedCall
from aivitals.sdk.wrapping import Api
from aivitals.usage import TokenUsage, tool_uses_from_openai_response, usage_from_openai

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponseFailedError(Exception):
    """A response whose ``status`` is ``failed`` (or a stream's ``error`` event), carrying the
    provider's error code so `aivitals.errors.classify_error` reads it like an HTTP error body."""

    def __init__(self, code: str | None, message: str | None) -> None:
        super().__init__(message or code or "response failed")
        self.code = code
        self.body = {"error": {"code": code, "message": message}}


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def read_response(tracker: TrackedCall, response: Any) -> None:
    """Read a whole ``Response`` (from ``create`` or a stream's last event) into the call."""
    model = _get(response, "model")
    if isinstance(model, str) and model:
        tracker.response_model = model
    tier = _get(response, "service_tier")
    if isinstance(tier, str) and tier:
        tracker.service_tier = tier
    usage = _get(response, "usage")
    if usage is not None:
        tokens = usage_from_openai(usage)
        tools = tool_uses_from_openai_response(response)
        if tools:
            tokens = msgspec.structs.replace(tokens, server_tool_uses=tools)
        tracker.set_tokens(tokens)
    status = _get(response, "status")
    reason = _get(_get(response, "incomplete_details"), "reason")
    tracker.finish_reason = finish_reason_from_responses(
        status, reason, _get(response, "output") or ()
    )
    if status == "failed":
        error = _get(response, "error")
        tracker.fail(ResponseFailedError(_get(error, "code"), _get(error, "message")))


class ResponsesApi(Api):
    """``responses.create`` / ``responses.parse`` / ``responses.stream``."""

    name = "an openai responses"

    def user(self, kwargs: Mapping[str, Any]) -> object:
        # safety_identifier is the Responses API's successor to the deprecated user field.
        return kwargs.get("user") or kwargs.get("safety_identifier")

    def read(self, tracker: TrackedCall, response: Any) -> None:
        read_response(tracker, response)

    def content(
        self, request: Mapping[str, Any], response: Any, finish_reason: str | None
    ) -> CallContent | None:
        return responses_content(request, response, finish_reason=finish_reason)

    def watch(self, tracker: TrackedCall, kwargs: Mapping[str, Any], note: Any) -> StreamWatch:
        return ResponsesWatch(tracker, kwargs)


class ResponsesWatch(StreamWatch):
    """A Responses stream: the first delta is the first token, the last event has the usage."""

    def __init__(self, tracker: TrackedCall, kwargs: Mapping[str, Any]) -> None:
        super().__init__(tracker)
        self.kwargs = kwargs
        self.deltas = 0
        self.saw_usage = False

    def observe(self, event: Any) -> bool:
        kind = _get(event, "type")
        if not isinstance(kind, str):
            return True
        tracker = self.tracker
        if kind.endswith(".delta"):
            # Text, refusal, tool arguments or a reasoning summary: the first generated output.
            tracker.mark_first_token()
            self.deltas += 1
        elif kind == "response.created":
            tracker.set_response_id(_get(_get(event, "response"), "id"))
            model = _get(_get(event, "response"), "model")
            if isinstance(model, str) and model:
                tracker.response_model = model
        elif kind in _TERMINAL:
            response = _get(event, "response")
            read_response(tracker, response)
            self.saw_usage = _get(response, "usage") is not None
            self.end()
        elif kind == "error":
            tracker.fail(ResponseFailedError(_get(event, "code"), _get(event, "message")))
            self.end()
        return True

    def content(self, events: list[Any]) -> CallContent | None:
        return responses_stream_content(
            self.request, events, finish_reason=self.tracker.finish_reason
        )

    def complete(self) -> None:
        if self.saw_usage:
            return
        given = self.kwargs.get("input")
        instructions = self.kwargs.get("instructions")
        estimate = TokenUsage(
            input_tokens=estimate_prompt_tokens(
                given if isinstance(given, list) else None,
                given if isinstance(given, str) else None,
            )
            + (estimate_text_tokens(instructions) if isinstance(instructions, str) else 0),
            output_tokens=self.deltas,
        )
        self.tracker.set_tokens(estimate, estimated=True)
