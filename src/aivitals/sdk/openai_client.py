"""`instrument(client)`: record every call an official ``openai`` client makes.

>>> import openai, aivitals
>>> client = aivitals.instrument(openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1"))
>>> aivitals.instrument(client) is client
True

Chat completions, legacy completions and embeddings are wrapped, sync and async, streaming and
not. The caller gets exactly the object the client returns: for streams, the same ``Stream`` whose
iterator aivitals watches on its way through. To read token usage from a stream, aivitals asks for
``stream_options={"include_usage": True}`` when the caller did not set ``stream_options``, and
then removes the extra usage chunk so the caller sees the stream it asked for.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar

from aivitals.attribution import EMPTY, Attribution, AttributionError, attribution_from_headers
from aivitals.estimate import estimate_prompt_tokens
from aivitals.model import Operation
from aivitals.sdk.track import TrackedCall

log = logging.getLogger("aivitals.sdk")

C = TypeVar("C")
_MARK = "_aivitals_instrumented"


def instrument(
    client: C,
    *,
    provider: str | None = None,
    feature: str | None = None,
    team: str | None = None,
    environment: str | None = None,
    tags: Mapping[str, object] | None = None,
) -> C:
    """Wrap an ``openai.OpenAI`` / ``AsyncOpenAI`` (or Azure) client in place and return it.

    ``provider`` defaults to ``azure`` for Azure clients and ``openai`` otherwise (any
    OpenAI-compatible server). Attribution comes from, in rising order: these arguments,
    `aivitals.context` / `track` / `observe` around the call, the request's ``user`` field, and
    ``X-Aivitals-*`` entries in ``extra_headers`` (the same headers the aivitals gateway reads).
    """
    if getattr(client, _MARK, False):
        return client
    name = type(client).__name__
    is_async = name.startswith("Async")
    defaults = Attribution().merged(feature=feature, team=team, environment=environment, tags=tags)
    chosen = provider or ("azure" if "Azure" in name else "openai")
    resources: Any = client  # duck-typed: any client with the openai resource layout
    targets: list[tuple[Any, Operation]] = [
        (resources.chat.completions, "chat"),
        (resources.completions, "text_completion"),
        (resources.embeddings, "embeddings"),
    ]
    for resource, operation in targets:
        original = resource.create
        wrap = _wrap_async if is_async else _wrap_sync
        resource.create = wrap(original, operation=operation, provider=chosen, defaults=defaults)
    setattr(client, _MARK, True)
    return client


def _start(
    kwargs: dict[str, Any], *, operation: Operation, provider: str, defaults: Attribution
) -> tuple[TrackedCall | None, bool]:
    """Begin tracking a request; returns the tracker and whether we added include_usage."""
    try:
        headers = kwargs.get("extra_headers")
        try:
            asked = attribution_from_headers(
                headers if isinstance(headers, Mapping) else {}, user=kwargs.get("user")
            )
        except AttributionError as exc:
            # The request still goes out as the caller wrote it; only its attribution is lost.
            log.warning("aivitals: attribution of an openai request left out: %s", exc)
            asked = EMPTY
        attribution = asked.over(defaults)
        model = kwargs.get("model")
        tracker = TrackedCall(
            model=model if isinstance(model, str) else None,
            provider=provider,
            operation=operation,
            attribution=attribution,
        )
        injected = False
        if kwargs.get("stream") is True and not isinstance(kwargs.get("stream_options"), Mapping):
            kwargs["stream_options"] = {"include_usage": True}
            injected = True
        tracker.start()
        return tracker, injected
    except Exception:
        log.exception("aivitals: could not start tracking an openai request")
        return None, False


def _finish_response(tracker: TrackedCall | None, response: Any) -> None:
    if tracker is None:
        return
    tracker.set_response(response)
    tracker.finish()


def _wrap_sync(
    original: Callable[..., Any], *, operation: Operation, provider: str, defaults: Attribution
) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(*args: Any, **kwargs: Any) -> Any:
        tracker, injected = _start(
            kwargs, operation=operation, provider=provider, defaults=defaults
        )
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            if tracker is not None:
                tracker.finish(exc)
            raise
        if kwargs.get("stream") is True and tracker is not None:
            _watch_stream(result, tracker, injected, kwargs)
        else:
            _finish_response(tracker, result)
        return result

    return create


def _wrap_async(
    original: Callable[..., Any], *, operation: Operation, provider: str, defaults: Attribution
) -> Callable[..., Any]:
    @functools.wraps(original)
    async def create(*args: Any, **kwargs: Any) -> Any:
        tracker, injected = _start(
            kwargs, operation=operation, provider=provider, defaults=defaults
        )
        try:
            result = await original(*args, **kwargs)
        except BaseException as exc:
            if tracker is not None:
                tracker.finish(exc)
            raise
        if kwargs.get("stream") is True and tracker is not None:
            _watch_async_stream(result, tracker, injected, kwargs)
        else:
            _finish_response(tracker, result)
        return result

    return create


class _StreamState:
    """What a stream has shown so far: enough to record it however it ends."""

    def __init__(self, tracker: TrackedCall, injected: bool, kwargs: Mapping[str, Any]) -> None:
        self.tracker = tracker
        self.injected = injected
        self.kwargs = kwargs
        self.content_chunks = 0
        self.saw_usage = False
        self.ended = False

    def see(self, chunk: Any) -> bool:
        """Account for one chunk; returns False when the chunk must not reach the caller."""
        tracker = self.tracker
        tracker.mark_first_token()
        usage = getattr(chunk, "usage", None)
        choices = getattr(chunk, "choices", None)
        if usage is not None:
            self.saw_usage = True
            tracker.set_usage(usage)
        if choices:
            self.content_chunks += 1
            reason = getattr(choices[0], "finish_reason", None)
            if reason:
                tracker.finish_reason = reason
        model = getattr(chunk, "model", None)
        if isinstance(model, str) and model:
            tracker.response_model = model
        return not (self.injected and usage is not None and not choices)

    def end(self, error: BaseException | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        if not self.saw_usage:
            # Usage never came (cut short, or the caller set stream_options without it): estimate,
            # and say so on the record.
            self.tracker.set_usage(
                input_tokens=estimate_prompt_tokens(
                    self.kwargs.get("messages"), self.kwargs.get("prompt")
                ),
                output_tokens=self.content_chunks,
                estimated=True,
            )
        self.tracker.finish(error)


def _watch_stream(
    stream: Any, tracker: TrackedCall, injected: bool, kwargs: Mapping[str, Any]
) -> None:
    try:
        state = _StreamState(tracker, injected, kwargs)
        inner: Iterator[Any] = stream._iterator
        stream._iterator = _relay(inner, state)
        original_close = stream.close

        def close() -> None:
            try:
                original_close()
            finally:
                state.end(GeneratorExit())

        stream.close = close
    except Exception:
        log.exception("aivitals: cannot watch this stream; it is recorded without its usage")
        tracker.finish()


def _relay(inner: Iterator[Any], state: _StreamState) -> Iterator[Any]:
    try:
        for chunk in inner:
            if state.see(chunk):
                yield chunk
    except GeneratorExit as exc:
        state.end(exc)
        raise
    except BaseException as exc:
        state.end(exc)
        raise
    state.end()


def _watch_async_stream(
    stream: Any, tracker: TrackedCall, injected: bool, kwargs: Mapping[str, Any]
) -> None:
    try:
        state = _StreamState(tracker, injected, kwargs)
        inner: AsyncIterator[Any] = stream._iterator
        stream._iterator = _arelay(inner, state)
        original_close = stream.close

        async def close() -> None:
            try:
                await original_close()
            finally:
                state.end(GeneratorExit())

        stream.close = close
    except Exception:
        log.exception("aivitals: cannot watch this stream; it is recorded without its usage")
        tracker.finish()


async def _arelay(inner: AsyncIterator[Any], state: _StreamState) -> AsyncIterator[Any]:
    try:
        async for chunk in inner:
            if state.see(chunk):
                yield chunk
    except GeneratorExit as exc:
        state.end(exc)
        raise
    except BaseException as exc:
        state.end(exc)
        raise
    state.end()
