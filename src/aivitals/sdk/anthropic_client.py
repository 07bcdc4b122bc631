"""`instrument(client)` for the official ``anthropic`` client: record every Messages API call.

``messages.create`` (streaming and not), ``messages.parse`` and the ``messages.stream`` helper
(its ``text_stream``, events, ``get_final_message()``, ``until_done()`` all read through the one
raw stream aivitals watches) are wrapped, on ``Anthropic`` and ``AsyncAnthropic`` alike. The
``anthropic`` package is never imported here: the wrapper reads the client's objects by their
fields.

Anthropic's usage is read the Anthropic way (`aivitals.usage.usage_from_anthropic`: cache reads
and writes, writes by lifetime, server tool uses). A stream says its input and cache counts in
``message_start`` and its output in ``message_delta``, whose usage is cumulative (newer APIs
repeat the input and cache counts there, and add server tool uses): the delta's counts replace
the start's. The first content delta is the first token; ``stop_reason`` is mapped to OpenAI's
finish reasons (`aivitals.finish`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aivitals.attribution import Attribution
from aivitals.content import CallContent
from aivitals.estimate import estimate_prompt_tokens
from aivitals.extract.messages import messages_content, messages_stream_content
from aivitals.finish import finish_reason_from_anthropic
from aivitals.provider_urls import provider_for_url
from aivitals.sdk.streams import StreamWatch
from aivitals.sdk.track import TrackedCall
from aivitals.sdk.wrapping import Api, Target, wrap_async, wrap_stream_helper, wrap_sync
from aivitals.usage import TokenUsage, usage_from_anthropic


def is_anthropic_client(client: object) -> bool:
    """True for the ``anthropic`` package's clients (Anthropic, AsyncAnthropic, Bedrock, Vertex)."""
    return any(cls.__module__.split(".")[0] == "anthropic" for cls in type(client).__mro__)


def anthropic_provider(client: Any) -> str:
    """``anthropic``, or the catalog's provider for the client's base URL (Bedrock is ``aws``,
    Vertex AI ``google``)."""
    return provider_for_url(str(getattr(client, "base_url", ""))) or "anthropic"


def instrument_anthropic(client: Any, *, provider: str | None, defaults: Attribution) -> None:
    """Wrap an ``anthropic.Anthropic`` / ``AsyncAnthropic`` client's ``messages`` in place."""
    is_async = type(client).__name__.startswith("Async")
    target = Target(
        provider=provider or anthropic_provider(client),
        base_url=str(getattr(client, "base_url", "")) or None,
        defaults=defaults,
    )
    messages = client.messages
    wrap = wrap_async if is_async else wrap_sync
    api = MessagesApi()
    messages.create = wrap(messages.create, api, target)
    if hasattr(messages, "parse"):
        messages.parse = wrap(messages.parse, api, target)
    manager = "AsyncMessageStreamManager" if is_async else "MessageStreamManager"
    messages.stream = wrap_stream_helper(
        messages.stream, api, target, manager_attr=f"_{manager}__api_request", is_async=is_async
    )


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _fields(usage: Any) -> dict[str, Any]:
    """A usage object's fields that are set, as a dict (SDK model or dict alike)."""
    if isinstance(usage, Mapping):
        return {k: v for k, v in usage.items() if v is not None}
    dump = getattr(usage, "model_dump", None)
    if callable(dump):
        data = dump(exclude_none=True)
        return data if isinstance(data, dict) else {}
    return {}


def read_message(tracker: TrackedCall, message: Any) -> None:
    """Read a whole ``Message`` into the call: model, usage, tier, stop reason."""
    model = _get(message, "model")
    if isinstance(model, str) and model:
        tracker.response_model = model
    usage = _get(message, "usage")
    if usage is not None:
        tracker.set_tokens(usage_from_anthropic(usage))
        _read_tier(tracker, usage)
    _read_stop(tracker, _get(message, "stop_reason"))


def _read_tier(tracker: TrackedCall, usage: Any) -> None:
    tier = _get(usage, "service_tier")
    if isinstance(tier, str) and tier:
        tracker.service_tier = tier


def _read_stop(tracker: TrackedCall, stop_reason: Any) -> None:
    if isinstance(stop_reason, str) and stop_reason:
        tracker.finish_reason = finish_reason_from_anthropic(stop_reason)


class MessagesApi(Api):
    """``messages.create`` / ``parse`` / ``stream``: the user is ``metadata.user_id``."""

    name = "an anthropic"

    def user(self, kwargs: Mapping[str, Any]) -> object:
        metadata = kwargs.get("metadata")
        return metadata.get("user_id") if isinstance(metadata, Mapping) else None

    def read(self, tracker: TrackedCall, response: Any) -> None:
        read_message(tracker, response)

    def content(
        self, request: Mapping[str, Any], response: Any, finish_reason: str | None
    ) -> CallContent | None:
        return messages_content(request, response, finish_reason=finish_reason)

    def watch(self, tracker: TrackedCall, kwargs: Mapping[str, Any], note: Any) -> StreamWatch:
        return MessagesWatch(tracker, kwargs)


class MessagesWatch(StreamWatch):
    """A Messages stream, event by event (the raw events, under the helpers too)."""

    def __init__(self, tracker: TrackedCall, kwargs: Mapping[str, Any]) -> None:
        super().__init__(tracker)
        self.kwargs = kwargs
        self.usage: dict[str, Any] = {}
        self.deltas = 0
        self.saw_output = False

    def observe(self, event: Any) -> bool:
        kind = _get(event, "type")
        tracker = self.tracker
        if kind == "content_block_delta":
            tracker.mark_first_token()
            self.deltas += 1
        elif kind == "message_start":
            message = _get(event, "message")
            tracker.set_response_id(_get(message, "id"))
            model = _get(message, "model")
            if isinstance(model, str) and model:
                tracker.response_model = model
            usage = _get(message, "usage")
            self.usage = _fields(usage)
            _read_tier(tracker, usage)
            self._count()
        elif kind == "message_delta":
            # Cumulative: each count the delta carries replaces the one so far.
            self.usage.update(_fields(_get(event, "usage")))
            self.saw_output = True
            self._count()
            _read_stop(tracker, _get(_get(event, "delta"), "stop_reason"))
        elif kind == "message_stop":
            self.end()
        return True

    def content(self, events: list[Any]) -> CallContent | None:
        return messages_stream_content(
            self.request, events, finish_reason=self.tracker.finish_reason
        )

    def _count(self) -> None:
        self.tracker.set_tokens(usage_from_anthropic(self.usage))

    def complete(self) -> None:
        if self.saw_output:
            return
        # The stream stopped before its message_delta: what message_start said of the input
        # stands; the output is estimated from the deltas seen, and the record says so.
        known = self.tracker.usage
        if not self.usage:
            system = self.kwargs.get("system")
            known = TokenUsage(
                input_tokens=estimate_prompt_tokens(
                    self.kwargs.get("messages"), system if isinstance(system, str) else None
                )
            )
        estimate = TokenUsage(
            input_tokens=known.input_tokens,
            cached_input_tokens=known.cached_input_tokens,
            cache_write_tokens=known.cache_write_tokens,
            cache_write_1h_tokens=known.cache_write_1h_tokens,
            output_tokens=max(known.output_tokens, self.deltas),
        )
        self.tracker.set_tokens(estimate, estimated=True)
