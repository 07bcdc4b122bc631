"""One OTLP span to one `Call`, through the `CallDraft` every source fills.

`operation_of` says whether a span describes a model call at all (and which operation);
`call_from_span` builds the call from the span's identity, times, status and attributes, or
raises `SpanRejected` (or `aivitals.model.InvalidRecord`) with a reason that names what is wrong.
The tables of attribute names are in `aivitals.otlp.conventions`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from aivitals.attribution import EMPTY, Attribution
from aivitals.bounds import CALL_TEXT_CHARS, MAX_TAG_VALUE_CHARS
from aivitals.draft import CallDraft
from aivitals.errors import ErrorInfo
from aivitals.model import Call, Operation
from aivitals.otlp.attribute_map import AttributeMap
from aivitals.otlp.conventions import (
    CALL_ID,
    ERROR_TYPE,
    FINISH_REASONS,
    FIRST_TOKEN_EVENTS,
    HTTP_STATUS,
    INVOCATION_PARAMETERS,
    MODEL,
    OPENINFERENCE_KIND,
    OPENINFERENCE_KINDS,
    OPERATION,
    OPERATIONS,
    PROVIDER,
    RESPONSE_MODEL,
    SERVICE_TIER,
    STREAM,
    TRACELOOP_REQUEST_TYPE,
    TTFT_SECONDS,
    error_info_of,
    normalise_provider,
)
from aivitals.otlp.ids import CALL_ID_PATTERN, call_id_for_span
from aivitals.otlp.tokens import BadAttribute, usage_of
from aivitals.otlp.values import Value

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ERROR = Status.STATUS_CODE_ERROR
_NO_ID = frozenset({bytes(16), bytes(8)})
_MODEL_NAMES = ", ".join(MODEL)
_EXCEPTION_EVENT = "exception"
_ERROR_CODE = re.compile(r"\bError code: ([1-5][0-9]{2})\b")
_TAG = "tag:"  # marks a kept tag among the Attribution fields an attribute may fill
UNKNOWN_PROVIDER = "unknown"
"""The provider of a call whose span names none; the recorder still prices it by model name."""


class SpanRejected(ValueError):
    """A model-call span that cannot become a valid `Call`; the message says why."""


def operation_of(attrs: Mapping[str, Value], span_name: str) -> Operation | None:
    """The span's model-call operation, or None when it is no model call.

    A convention that names the span's kind decides; with none, a span that names both a
    provider and a model (Vercel's AI SDK ``doGenerate`` spans) is a chat call.
    """
    operation = attrs.get(OPERATION)
    if operation is not None:
        return OPERATIONS.get(operation) if type(operation) is str else None
    kind = attrs.get(OPENINFERENCE_KIND)
    if kind is not None:
        return OPENINFERENCE_KINDS.get(kind.upper()) if type(kind) is str else None
    request_type = attrs.get(TRACELOOP_REQUEST_TYPE)
    if request_type is not None:
        found = OPERATIONS.get(request_type) if type(request_type) is str else None
        # OpenLLMetry marks Anthropic's Messages API "completion"; its span is "anthropic.chat".
        if found == "text_completion" and span_name.endswith(".chat"):
            return "chat"
        return found
    if any(name in attrs for name in PROVIDER) and any(name in attrs for name in MODEL):
        return "chat"
    return None


def call_from_span(
    span: Span,
    attrs: Mapping[str, Value],
    operation: Operation,
    attributor: Attributor,
    price: Callable[[CallDraft], None] | None = None,
) -> Call:
    """The `Call` a model-call span describes; ``attrs`` are its decoded attributes.

    ``price`` (the recorder's ``price_draft``) prices the draft before it is frozen, so the
    call is built and validated once; without it the call comes out unpriced.
    """
    trace_id = span.trace_id
    span_id = span.span_id
    if len(trace_id) != 16 or trace_id in _NO_ID:
        raise SpanRejected(
            f"trace_id: must be 16 bytes and not all zero, got {len(trace_id)} bytes"
        )
    if len(span_id) != 8 or span_id in _NO_ID:
        raise SpanRejected(f"span_id: must be 8 bytes and not all zero, got {len(span_id)} bytes")
    start = span.start_time_unix_nano
    end = span.end_time_unix_nano
    if start == 0:
        raise SpanRejected("start_time_unix_nano: missing (0)")
    if end < start:
        raise SpanRejected("end_time_unix_nano: earlier than start_time_unix_nano")
    model = _text(attrs, MODEL)
    parameters = _text(attrs, INVOCATION_PARAMETERS)
    if not model and parameters:
        model = _parameter(parameters, "model")
    if not model:
        raise SpanRejected(f"a model-call span names no model (none of {_MODEL_NAMES})")
    provider = _text(attrs, PROVIDER)
    try:
        usage = usage_of(attrs)
    except BadAttribute as exc:
        raise SpanRejected(str(exc)) from None

    own_id = _first(attrs, CALL_ID)
    attribution = attributor.for_span(attrs)
    if attribution.user is None and parameters and '"user"' in parameters:
        user = _parameter(parameters, "user")
        if user:
            attribution = attribution.merged(user=user[: CALL_TEXT_CHARS["user"]])
    draft = CallDraft(
        provider=normalise_provider(provider) if provider else UNKNOWN_PROVIDER,
        model=model,
        operation=operation,
        attribution=attribution,
        started_at=_EPOCH + timedelta(microseconds=start // 1000),
        id=own_id
        if type(own_id) is str and CALL_ID_PATTERN.fullmatch(own_id)
        else call_id_for_span(trace_id, span_id, start),
    )
    draft.trace_id = trace_id.hex()
    draft.span_id = span_id.hex()
    parent = span.parent_span_id
    draft.parent_span_id = parent.hex() if len(parent) == 8 and parent not in _NO_ID else None
    draft.set_tokens(usage)
    draft.response_model = _text(attrs, RESPONSE_MODEL)
    draft.finish_reason = _finish_reason(attrs)
    draft.service_tier = _text(attrs, SERVICE_TIER)
    latency_ms = (end - start) / 1e6
    ttft_ms = _ttft_ms(span, attrs)
    # An instrumentation's own clock can put the first token a hair after the span's end.
    draft.ttft_ms = None if ttft_ms is None else min(ttft_ms, latency_ms)
    status = _first(attrs, HTTP_STATUS)
    http_status = status if type(status) is int and 100 <= status <= 599 else None
    failed = span.status.code == _ERROR
    draft.http_status = http_status
    error_type = attrs.get(ERROR_TYPE)
    if failed or error_type is not None:
        draft.fail(
            _error_info(span, str(error_type) if error_type is not None else None, http_status)
        )
    if price is not None:
        price(draft)
    return draft.freeze(latency_ms=latency_ms)


def _first(attrs: Mapping[str, Value], names: tuple[str, ...]) -> Value:
    for name in names:
        value = attrs.get(name)
        if value is not None:
            return value
    return None


def _text(attrs: Mapping[str, Value], names: tuple[str, ...]) -> str | None:
    value = _first(attrs, names)
    return value if type(value) is str and value else None


def _finish_reason(attrs: Mapping[str, Value]) -> str | None:
    value = _first(attrs, FINISH_REASONS)
    if type(value) is list:
        value = next((item for item in value if type(item) is str and item), None)
    return value[: CALL_TEXT_CHARS["finish_reason"]] if type(value) is str and value else None


def _ttft_ms(span: Span, attrs: Mapping[str, Value]) -> float | None:
    if _first(attrs, STREAM) is False:
        return None
    seconds = _first(attrs, TTFT_SECONDS)
    if type(seconds) in (int, float):
        return float(seconds) * 1000.0  # type: ignore[arg-type]  # int or float, checked
    events = span.events
    if not events:
        return None
    for event in events:
        if event.name in FIRST_TOKEN_EVENTS and event.time_unix_nano >= span.start_time_unix_nano:
            return (event.time_unix_nano - span.start_time_unix_nano) / 1e6
    return None


def _error_info(span: Span, error_type: str | None, http_status: int | None) -> ErrorInfo:
    message = span.status.message
    if not message or error_type is None:
        # OpenInference and OpenLIT name the exception only in its event.
        for event in span.events:
            if event.name == _EXCEPTION_EVENT:
                for kv in event.attributes:
                    if kv.key == "exception.message" and not message:
                        message = kv.value.string_value
                    elif kv.key == "exception.type" and error_type is None:
                        error_type = kv.value.string_value
                break
    if http_status is None and message:
        # openai's and anthropic's status errors read "Error code: 429 - {...}".
        said = _ERROR_CODE.search(message[:200])
        if said:
            http_status = int(said.group(1))
    return error_info_of(error_type, http_status, message)


def _parameter(parameters: str, name: str) -> str | None:
    """A text field of OpenInference's invocation parameters (JSON), or None."""
    try:
        decoded = json.loads(parameters)
    except ValueError:
        return None
    value = decoded.get(name) if type(decoded) is dict else None
    return value if type(value) is str and value else None


class Attributor:
    """Reads `Attribution` from a span's attributes over its resource's, per `AttributeMap`.

    Built once per resource, whose attribution (``base``) is read once; a span's own attributes
    then win over the resource's, field by field, each field taking the first of its names
    present. A span that carries none of the map's attributes gets ``base`` itself.
    """

    __slots__ = ("_keys", "_slots", "base")

    def __init__(self, attribute_map: AttributeMap, resource: Mapping[str, Value]) -> None:
        self._keys = attribute_map.keys()
        fields = [
            ("user", attribute_map.user, CALL_TEXT_CHARS["user"]),
            ("feature", attribute_map.feature, CALL_TEXT_CHARS["feature"]),
            ("team", attribute_map.team, CALL_TEXT_CHARS["team"]),
            ("endpoint", attribute_map.endpoint, CALL_TEXT_CHARS["endpoint"]),
            ("prompt_version", attribute_map.prompt_version, CALL_TEXT_CHARS["prompt_version"]),
            ("environment", attribute_map.environment, CALL_TEXT_CHARS["environment"]),
        ]
        fields.extend(
            (_TAG + tag, names, MAX_TAG_VALUE_CHARS) for tag, names in attribute_map.tags.items()
        )
        # Attribute name -> the fields it may fill, with its rank among each field's names:
        # a span carries a handful of these, so the walk is over what is present, not the map.
        slots: dict[str, list[tuple[str, int, int]]] = {}
        for field, names, limit in fields:
            for rank, name in enumerate(names):
                slots.setdefault(name, []).append((field, rank, limit))
        self._slots = {name: tuple(found) for name, found in slots.items()}
        self.base = self._read(resource, EMPTY)

    def for_span(self, attrs: Mapping[str, Value]) -> Attribution:
        if self._keys.isdisjoint(attrs):
            return self.base
        return self._read(attrs, self.base)

    def _read(self, attrs: Mapping[str, Value], base: Attribution) -> Attribution:
        best: dict[str, tuple[int, str]] = {}
        for name in self._keys.intersection(attrs):
            value = attrs[name]
            if value is None or value == "" or type(value) is list:
                continue
            for field, rank, limit in self._slots[name]:
                held = best.get(field)
                if held is None or rank < held[0]:
                    best[field] = (rank, str(value)[:limit])
        if not best:
            return base
        values: dict[str, str] = {}
        tags: dict[str, str] = dict(base.tags)
        for field, (_, value) in best.items():
            if field.startswith(_TAG):
                tags[field[len(_TAG) :]] = value
            else:
                values[field] = value
        return Attribution(
            user=values.get("user", base.user),
            feature=values.get("feature", base.feature),
            team=values.get("team", base.team),
            endpoint=values.get("endpoint", base.endpoint),
            prompt_version=values.get("prompt_version", base.prompt_version),
            environment=values.get("environment", base.environment),
            tags=tags,
        )
