"""Wrapping one client method: start a tracked call, send the request, record how it went.

Shared by the ``openai`` and ``anthropic`` wrappers; an `Api` says how one endpoint's requests
and answers read (where the user is, how a response and a stream are read). Nothing here raises
into the application: aivitals' own failures are logged, the client's exceptions pass unchanged.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from aivitals.attribution import EMPTY, Attribution, AttributionError, attribution_from_headers
from aivitals.content import CallContent
from aivitals.model import Operation
from aivitals.sdk.spans import trace_headers
from aivitals.sdk.streams import StreamWatch, watch_async_stream, watch_stream
from aivitals.sdk.track import TrackedCall

log = logging.getLogger("aivitals.sdk")


class Api:
    """How one endpoint's calls read; subclass per endpoint (chat completions, messages, ...)."""

    operation: Operation = "chat"
    name = "an LLM"

    def user(self, kwargs: Mapping[str, Any]) -> object:
        """The end user the request names in its body, if any."""
        return kwargs.get("user")

    def prepare(self, kwargs: dict[str, Any]) -> Any:
        """Adjust the request before it is sent (e.g. ask for stream usage); returns a note for
        `watch`."""
        return None

    def is_stream(self, kwargs: Mapping[str, Any]) -> bool:
        return kwargs.get("stream") is True

    def read(self, tracker: TrackedCall, response: Any) -> None:
        """Read a complete (non-streamed) response into the call."""
        tracker.set_response(response)

    def content(
        self, request: Mapping[str, Any], response: Any, finish_reason: str | None
    ) -> CallContent | None:
        """What the call said and answered (run on the quality worker, never the caller's
        thread); None when this endpoint has no text to evaluate."""
        return None

    def watch(self, tracker: TrackedCall, kwargs: Mapping[str, Any], note: Any) -> StreamWatch:
        """The watch for a streamed answer."""
        return StreamWatch(tracker)


class Target:
    """Where the calls go and are recorded as coming from: provider, the client's base URL (the
    span's ``server.*``) and default attribution."""

    __slots__ = ("base_url", "defaults", "provider")

    def __init__(self, *, provider: str, base_url: str | None, defaults: Attribution) -> None:
        self.provider = provider
        self.base_url = base_url
        self.defaults = defaults


def begin(kwargs: dict[str, Any], api: Api, target: Target) -> tuple[TrackedCall | None, Any]:
    """Start tracking a request (and add trace headers to it); None when that failed."""
    try:
        headers = kwargs.get("extra_headers")
        try:
            asked = attribution_from_headers(
                headers if isinstance(headers, Mapping) else {}, user=api.user(kwargs)
            )
        except AttributionError as exc:
            # The request still goes out as the caller wrote it; only its attribution is lost.
            log.warning("aivitals: attribution of %s request left out: %s", api.name, exc)
            asked = EMPTY
        model = kwargs.get("model")
        tracker = TrackedCall(
            model=model if isinstance(model, str) else None,
            provider=target.provider,
            operation=api.operation,
            attribution=asked.over(target.defaults),
        )
        note = api.prepare(kwargs)
        tracker.start()
        if target.base_url:
            tracker.set_server(target.base_url)
        add_trace_headers(kwargs)
        return tracker, note
    except Exception:
        log.exception("aivitals: could not start tracking %s request", api.name)
        return None, None


def add_trace_headers(kwargs: dict[str, Any]) -> None:
    """Merge the current span's W3C trace headers into ``extra_headers``; the caller's own win."""
    try:
        extra = trace_headers()
        if not extra:
            return
        given = kwargs.get("extra_headers")
        mine: dict[str, Any] = dict(given) if isinstance(given, Mapping) else {}
        taken = {str(key).lower() for key in mine}
        for key, value in extra.items():
            if key.lower() not in taken:
                mine[key] = value
        kwargs["extra_headers"] = mine
    except Exception:
        log.exception("aivitals: could not add trace headers to a request")


def request_snapshot(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request as it was sent, for building its content later. ``kwargs`` is the wrapper's
    own dict (Python builds one per call), but the caller may append to its ``messages`` (or
    ``input``) list right after the call: those lists are copied (pointers only), in place."""
    for name in ("messages", "input"):
        given = kwargs.get(name)
        if isinstance(given, list):
            kwargs[name] = list(given)
    return kwargs


def settle(
    tracker: TrackedCall | None, api: Api, response: Any, kwargs: dict[str, Any] | None = None
) -> None:
    """Record a complete response. Never raises."""
    if tracker is None:
        return
    try:
        tracker.set_response_id(getattr(response, "id", None))
        api.read(tracker, response)
        if kwargs is not None and tracker.wants_content():
            request = request_snapshot(kwargs)
            tracker.content_source = lambda: api.content(request, response, tracker.finish_reason)
    except Exception:
        log.exception("aivitals: could not read the response of call %s", tracker.id)
    tracker.end()


def wrap_sync(original: Callable[..., Any], api: Api, target: Target) -> Callable[..., Any]:
    """A sync ``create`` that records each call it makes."""

    @functools.wraps(original)
    def create(*args: Any, **kwargs: Any) -> Any:
        tracker, note = begin(kwargs, api, target)
        try:
            with _active(tracker):
                result = original(*args, **kwargs)
        except BaseException as exc:
            if tracker is not None:
                tracker.end(exc)
            raise
        if tracker is not None and api.is_stream(kwargs):
            watch_stream(result, _new_watch(api, tracker, kwargs, note))
        else:
            settle(tracker, api, result, kwargs)
        return result

    return create


def wrap_async(original: Callable[..., Any], api: Api, target: Target) -> Callable[..., Any]:
    """An async ``create`` that records each call it makes."""

    @functools.wraps(original)
    async def create(*args: Any, **kwargs: Any) -> Any:
        tracker, note = begin(kwargs, api, target)
        try:
            with _active(tracker):
                result = await original(*args, **kwargs)
        except BaseException as exc:
            if tracker is not None:
                tracker.end(exc)
            raise
        if tracker is not None and api.is_stream(kwargs):
            watch_async_stream(result, _new_watch(api, tracker, kwargs, note))
        else:
            settle(tracker, api, result, kwargs)
        return result

    return create


def wrap_stream_helper(
    original: Callable[..., Any], api: Api, target: Target, *, manager_attr: str, is_async: bool
) -> Callable[..., Any]:
    """A ``stream(...)`` helper (``messages.stream``, ``responses.stream``) that records its call.

    The helper returns a manager holding the request to make on entry (in its private
    ``manager_attr``); aivitals wraps that request so the raw stream the helper reads from is
    watched. The call starts when ``stream()`` is called, as the request (and its trace headers)
    is built then. If the manager's layout is not the one expected, a warning says so and the
    call is recorded at once with estimated tokens: the application's stream is never touched.
    """

    @functools.wraps(original)
    def stream(*args: Any, **kwargs: Any) -> Any:
        tracker, note = begin(kwargs, api, target)
        try:
            manager = original(*args, **kwargs)
        except BaseException as exc:
            if tracker is not None:
                tracker.end(exc)
            raise
        if tracker is not None:
            _hook_manager(manager, manager_attr, _new_watch(api, tracker, kwargs, note), is_async)
        return manager

    return stream


def _active(tracker: TrackedCall | None) -> AbstractContextManager[None]:
    """The call's span current around the request, so spans made inside it are its children."""
    return tracker.active() if tracker is not None else nullcontext()


def _hook_manager(manager: Any, attr: str, watch: StreamWatch, is_async: bool) -> None:
    try:
        request = getattr(manager, attr)
    except AttributeError:
        log.warning(
            "aivitals: %s has no %s: this client version's stream helper is not recorded",
            type(manager).__name__,
            attr,
        )
        watch.end()
        return
    if is_async:

        async def arequest() -> Any:
            try:
                with watch.tracker.active():
                    raw = await request
            except BaseException as exc:
                watch.end(exc)
                raise
            watch_async_stream(raw, watch)
            return raw

        setattr(manager, attr, arequest())
    else:

        def srequest() -> Any:
            try:
                with watch.tracker.active():
                    raw = request()
            except BaseException as exc:
                watch.end(exc)
                raise
            watch_stream(raw, watch)
            return raw

        setattr(manager, attr, srequest)


def _new_watch(api: Api, tracker: TrackedCall, kwargs: dict[str, Any], note: Any) -> StreamWatch:
    try:
        watch = api.watch(tracker, kwargs, note)
        if watch.kept is not None:
            watch.request = request_snapshot(kwargs)
        return watch
    except Exception:
        log.exception("aivitals: could not watch the stream of call %s", tracker.id)
        return StreamWatch(tracker)
