"""One OTLP span to one `Call`, through the `CallDraft` every source fills.

`operation_of` says whether a span describes a model call at all (and which operation);
`call_from_span` builds the call from the span's identity, times, status and facts (its
attributes read once, `aivitals.otlp.facts`), or raises `SpanRejected` (or
`aivitals.model.InvalidRecord`) with a reason that names what is wrong. The tables of attribute
names are in `aivitals.otlp.conventions`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import msgspec
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from aivitals.attribution import EMPTY, Attribution
from aivitals.bounds import CALL_TEXT_CHARS
from aivitals.draft import CallDraft
from aivitals.errors import ErrorInfo
from aivitals.model import CACHE_RESULTS, Call, InvalidRecord, Operation
from aivitals.otlp import facts as fact
from aivitals.otlp.conventions import (
    FIRST_TOKEN_EVENTS,
    MODEL,
    OPENINFERENCE_KINDS,
    OPERATIONS,
    RESPONSE_MODEL,
    error_info_of,
    normalise_provider,
)
from aivitals.otlp.facts import FIRST_ATTRIBUTION, FactTable
from aivitals.otlp.ids import CALL_ID_PATTERN, call_id_for_span
from aivitals.otlp.tokens import BadAttribute, usage_of
from aivitals.otlp.values import Value

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ERROR = Status.STATUS_CODE_ERROR
_NO_ID = frozenset({bytes(16), bytes(8)})
_MODEL_NAMES = ", ".join((*MODEL, *RESPONSE_MODEL))
_EXCEPTION_EVENT = "exception"
_ERROR_CODE = re.compile(r"\bError code: ([1-5][0-9]{2})\b")
_FINISH_CHARS = CALL_TEXT_CHARS["finish_reason"]
_USER_CHARS = CALL_TEXT_CHARS["user"]
_ATTRIBUTION_CACHE = 1024  # distinct span attributions remembered per resource
_RESOURCES = 16  # resources (services) remembered: at most 16 x 1024 attributions, a few MB
UNKNOWN_PROVIDER = "unknown"
"""The provider of a call whose span names none; the recorder still prices it by model name."""


class SpanRejected(ValueError):
    """A model-call span that cannot become a valid `Call`; the message says why."""


def operation_of(values: list[Value], span_name: str) -> Operation | None:
    """The span's model-call operation, or None when it is no model call.

    A convention that names the span's kind decides; with none, a span that names both a
    provider and a model (Vercel's AI SDK ``doGenerate`` spans) is a chat call, unless it names
    an agent.
    """
    operation = values[fact.OPERATION]
    if operation is not None:
        return OPERATIONS.get(operation) if type(operation) is str else None
    kind = values[fact.OPENINFERENCE_KIND]
    if kind is not None:
        return OPENINFERENCE_KINDS.get(kind.upper()) if type(kind) is str else None
    request_type = values[fact.REQUEST_TYPE]
    if request_type is not None:
        found = OPERATIONS.get(request_type) if type(request_type) is str else None
        # OpenLLMetry marks Anthropic's Messages API "completion"; its span is "anthropic.chat".
        if found == "text_completion" and span_name.endswith(".chat"):
            return "chat"
        return found
    if (
        values[fact.PROVIDER] is not None
        and (values[fact.MODEL] is not None or values[fact.RESPONSE_MODEL] is not None)
        and values[fact.AGENT] is None
    ):
        return "chat"
    return None


def call_from_span(
    span: Span,
    values: list[Value],
    names: list[str | None],
    *,
    operation: Operation,
    attributor: Attributor,
    price: Callable[[CallDraft], None] | None = None,
) -> Call:
    """The `Call` a model-call span describes, from its facts (``values``, and the attribute
    ``names`` they were read from).

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
    # The call's facts in one unpacking (their order is `aivitals.otlp.facts`'): a span reads
    # some twenty of them, and indexing the list by name for each was a tenth of this function.
    (
        own_id,
        provider,
        _,
        _,
        _,
        model,
        response_model,
        parameters,
        stream,
        _,
        _,
        _,
        _,
        _,
        _,
        ttft_seconds,
        finish,
        error_type,
        status,
        service_tier,
        own_status,
        cache,
        tokens_estimated,
        _,
        _,
    ) = values[: fact.FIRST_ATTRIBUTION]
    if type(response_model) is not str or not response_model:
        response_model = None
    if type(model) is not str or not model:
        model = response_model
    if type(parameters) is not str or not parameters:
        parameters = None
    if not model and parameters:
        model = _parameter(parameters, "model")
    if not model:
        raise SpanRejected(f"a model-call span names no model (none of {_MODEL_NAMES})")
    try:
        usage = usage_of(values, names)
    except BadAttribute as exc:
        raise SpanRejected(str(exc)) from None

    attribution = attributor.for_span(values)
    if attribution.user is None and parameters and '"user"' in parameters:
        user = _parameter(parameters, "user")
        if user:
            attribution = attribution.merged(user=user[:_USER_CHARS])
    draft = CallDraft(
        provider=normalise_provider(provider)
        if type(provider) is str and provider
        else UNKNOWN_PROVIDER,
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
    draft.response_model = response_model
    draft.service_tier = service_tier if type(service_tier) is str and service_tier else None
    if finish is not None:
        draft.finish_reason = _finish_reason(finish)
    latency_ms = (end - start) / 1e6
    if stream is not False:  # a whole answer has no first token of its own
        ttft_ms = _ttft_ms(span, ttft_seconds)
        # An instrumentation's own clock can put the first token a hair after the span's end.
        draft.ttft_ms = None if ttft_ms is None else min(ttft_ms, latency_ms)
    http_status = status if type(status) is int and 100 <= status <= 599 else None
    draft.http_status = http_status
    if error_type is not None or span.status.code == _ERROR:
        draft.fail(
            _error_info(span, str(error_type) if error_type is not None else None, http_status)
        )
    if tokens_estimated is True:
        draft.tokens_estimated = True
    if type(cache) is str and cache in CACHE_RESULTS:
        draft.cache = cache  # type: ignore[assignment]  # checked against CACHE_RESULTS
    if own_status == "cancelled" and draft.status == "ok":
        draft.cancel()
    if price is not None:
        price(draft)
        if draft.priced:
            try:
                return draft.freeze(latency_ms=latency_ms)
            except InvalidRecord:
                # A price the record refuses (a cost past its bound): the call goes on unpriced,
                # as it does when the recorder prices it after the fact, and the recorder's own
                # pricing then says what failed.
                draft.priced = None
    return draft.freeze(latency_ms=latency_ms)


def _finish_reason(value: Value) -> str | None:
    if type(value) is list:
        for item in value:  # the first text; a loop, not next(generator): one span in two has it
            if type(item) is str and item:
                return item[:_FINISH_CHARS]
        return None
    return value[:_FINISH_CHARS] if type(value) is str and value else None


def _ttft_ms(span: Span, seconds: Value) -> float | None:
    if type(seconds) is float or type(seconds) is int:
        return seconds * 1000.0
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
        decoded = msgspec.json.decode(parameters)
    except msgspec.DecodeError:
        return None
    value = decoded.get(name) if type(decoded) is dict else None
    return value if type(value) is str and value else None


class Attributor:
    """Reads `Attribution` from a span's facts over its resource's, per the `FactTable`.

    Built once per resource of an export, whose attribution (``base``) is read once; a span's
    own attributes then win over the resource's, field by field. A span that carries none of the
    attribution attributes gets ``base`` itself, and spans that carry the same ones share one
    `Attribution`: one user's calls in one export, and in the exports that follow from the same
    resource (a service exports every few seconds; attributions are immutable, so sharing them
    across exports and threads is safe).
    """

    __slots__ = ("_cache", "_resource", "_size", "_table", "base")

    _shared: ClassVar[dict[tuple[FactTable, tuple[Value, ...]], dict[Any, Attribution]]] = {}

    def __init__(self, table: FactTable, resource: list[Value]) -> None:
        self._table = table
        self._size = table.size - FIRST_ATTRIBUTION
        self._resource = resource[FIRST_ATTRIBUTION:]
        self._cache = self._remembered(table, self._resource)
        self.base = self._build(self._resource)

    @classmethod
    def _remembered(cls, table: FactTable, resource: list[Value]) -> dict[Any, Attribution]:
        """The span attributions built lately under this resource (a new dict for a resource
        with an array value, which cannot be a key)."""
        try:
            key = (table, tuple(resource))
            return cls._shared[key]
        except TypeError:
            return {}
        except KeyError:
            pass
        # Bounded: past so many resources, forget them all (a dict's clear and set are atomic
        # under the GIL; the receiver's threads at worst build an attribution twice).
        if len(cls._shared) >= _RESOURCES:
            cls._shared.clear()
        return cls._shared.setdefault(key, {})

    def for_span(self, values: list[Value]) -> Attribution:
        own = values[FIRST_ATTRIBUTION:]
        if own.count(None) == self._size:
            return self.base
        key = tuple(own)
        try:
            return self._cache[key]
        except KeyError:
            pass
        except TypeError:  # an array value: unhashable, and no attribution anyway
            return self._build(self._merged(own))
        built = self._build(self._merged(own))
        if len(self._cache) >= _ATTRIBUTION_CACHE:
            self._cache.clear()  # bounded; the attributions in use are built again at once
        self._cache[key] = built
        return built

    def _merged(self, own: list[Value]) -> list[Value]:
        return [
            mine if mine is not None else theirs
            for mine, theirs in zip(own, self._resource, strict=True)
        ]

    def _build(self, values: list[Value]) -> Attribution:
        if values.count(None) == self._size:
            return EMPTY
        texts: list[str | None] = [
            None if value is None or type(value) is list else str(value)[:limit]
            for value, limit in zip(values, self._table.limits, strict=True)
        ]
        user, feature, team, endpoint, prompt_version, environment = texts[:6]
        tags = {
            tag: text
            for tag, text in zip(self._table.tags, texts[6:], strict=True)
            if text is not None
        }
        return Attribution(
            user=user,
            feature=feature,
            team=team,
            endpoint=endpoint,
            prompt_version=prompt_version,
            environment=environment,
            tags=tags,
        )
