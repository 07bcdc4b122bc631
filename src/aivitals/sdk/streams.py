"""Watching a client's stream on its way to the caller, without changing what the caller gets.

The ``openai`` and ``anthropic`` clients (both Stainless-built) iterate a ``Stream`` through its
``_iterator``; aivitals swaps that iterator for a relay that shows every event to a `StreamWatch`
and passes it on (or holds back one the caller did not ask for). The caller keeps the very object
the client returned, and the helpers built over it (``messages.stream``, ``responses.stream``)
read through the relay too.

A stream ends one of four ways, and each is recorded once: its last event (the watch says which
one is last), the end of the iterator, an exception from it (classified), or the caller closing
it first (``cancelled``). Closing is seen at the response: every ``close()`` of these clients and
their helpers ends in ``response.close()`` (``aclose()``), and the client's own generator also
closes the response when it finishes; only a close while the caller holds control (between two
events) is the caller's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from aivitals.content import CallContent
from aivitals.sdk.track import TrackedCall

log = logging.getLogger("aivitals.sdk")


class StreamWatch:
    """What a stream has shown so far: enough to record it however it ends. Subclass per API."""

    def __init__(self, tracker: TrackedCall) -> None:
        self.tracker = tracker
        self.ended = False
        # True while the caller holds control: before the first event and between two events.
        self.caller_has_control = True
        # The events seen, kept (by reference, one append each) only when something reads the
        # call's content; `content` assembles them later, on the quality worker.
        self.kept: list[Any] | None = [] if tracker.wants_content() else None
        self.request: Mapping[str, Any] = {}
        """The request as sent (`wrapping.request_snapshot`), when events are kept."""

    def see(self, event: Any) -> bool:
        """Account for one event; False when the event must not reach the caller. Never raises."""
        if self.kept is not None:
            self.kept.append(event)
        try:
            return self.observe(event)
        except Exception:
            log.exception("aivitals: could not read a stream event of call %s", self.tracker.id)
            return True

    def observe(self, event: Any) -> bool:
        """Read one event (subclasses); the base passes every event on."""
        return True

    def complete(self) -> None:
        """Before the record: fill in what the stream never said (subclasses estimate usage)."""

    def content(self, events: list[Any]) -> CallContent | None:
        """The call's content assembled from the events kept (subclasses; on the quality
        worker)."""
        return None

    def end(self, error: BaseException | None = None) -> None:
        """Record the call, once."""
        if self.ended:
            return
        self.ended = True
        try:
            self.complete()
        except Exception:
            log.exception("aivitals: could not complete the stream of call %s", self.tracker.id)
        kept = self.kept
        if kept is not None:
            self.tracker.content_source = lambda: self.content(kept)
        self.tracker.end(error)


def watch_stream(stream: Any, watch: StreamWatch) -> None:
    """Route a sync ``Stream``'s events through ``watch``; records without usage if it cannot."""
    try:
        inner: Iterator[Any] = stream._iterator
        stream._iterator = _relay(inner, watch)
        response = stream.response
        original_close = response.close

        def close() -> None:
            try:
                original_close()
            finally:
                if watch.caller_has_control:
                    watch.end(GeneratorExit())

        response.close = close
    except Exception:
        log.exception("aivitals: cannot watch this stream; it is recorded without its usage")
        watch.end()


def watch_async_stream(stream: Any, watch: StreamWatch) -> None:
    """Route an ``AsyncStream``'s events through ``watch``; records without usage if it cannot."""
    try:
        inner: AsyncIterator[Any] = stream._iterator
        stream._iterator = _arelay(inner, watch)
        response = stream.response
        original_aclose = response.aclose

        async def aclose() -> None:
            try:
                await original_aclose()
            finally:
                if watch.caller_has_control:
                    watch.end(GeneratorExit())

        response.aclose = aclose
    except Exception:
        log.exception("aivitals: cannot watch this stream; it is recorded without its usage")
        watch.end()


def _relay(inner: Iterator[Any], watch: StreamWatch) -> Iterator[Any]:
    try:
        while True:
            watch.caller_has_control = False
            try:
                event = next(inner)
            except StopIteration:
                break
            finally:
                watch.caller_has_control = True
            if watch.see(event):
                yield event
    except BaseException as exc:  # GeneratorExit included: the caller dropped the stream
        watch.end(exc)
        raise
    watch.end()


async def _arelay(inner: AsyncIterator[Any], watch: StreamWatch) -> AsyncIterator[Any]:
    try:
        while True:
            watch.caller_has_control = False
            try:
                event = await anext(inner)
            except StopAsyncIteration:
                break
            finally:
                watch.caller_has_control = True
            if watch.see(event):
                yield event
    except BaseException as exc:
        watch.end(exc)
        raise
    watch.end()
