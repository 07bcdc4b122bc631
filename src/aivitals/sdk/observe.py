"""`@observe`: attribute and time a function that makes model calls.

>>> import aivitals
>>> @aivitals.observe(feature="summarise", model="gpt-4o-mini")
... def summarise(text: str) -> str:
...     aivitals.current_call().set_usage(input_tokens=len(text), output_tokens=5)
...     return text[:5]
>>> summarise("a long document")
'a lon'

Inside the function, instrumented clients record their own calls and inherit its attribution
(feature, user, team, tags); the function is then a scope and records nothing itself, so no token
is counted twice. When nothing inside records a call, the function is taken to be the call: it is
recorded with the ``model`` given (or the one on the response it returns), reading usage from a
returned OpenAI or Anthropic response. When it learns no model either, nothing is recorded, and
a warning says so once per decorated function (logger ``aivitals.sdk``).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from aivitals.attribution import Attribution
from aivitals.model import Operation
from aivitals.sdk.runtime import get_runtime
from aivitals.sdk.track import TrackedCall

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("aivitals.sdk")


@overload
def observe(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def observe(
    *,
    model: str | None = None,
    provider: str | None = None,
    operation: Operation = "chat",
    user: str | None = None,
    feature: str | None = None,
    team: str | None = None,
    endpoint: str | None = None,
    prompt_version: str | None = None,
    environment: str | None = None,
    tags: Mapping[str, object] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def observe(
    func: Callable[P, R] | None = None,
    /,
    *,
    model: str | None = None,
    provider: str | None = None,
    operation: Operation = "chat",
    user: str | None = None,
    feature: str | None = None,
    team: str | None = None,
    endpoint: str | None = None,
    prompt_version: str | None = None,
    environment: str | None = None,
    tags: Mapping[str, object] | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync or async function; works bare (``@observe``) or with options."""
    attribution = Attribution().merged(
        user=user,
        feature=feature,
        team=team,
        endpoint=endpoint,
        prompt_version=prompt_version,
        environment=environment,
        tags=tags,
    )

    def new_call(label: str) -> TrackedCall:
        call = TrackedCall(
            model=model,
            provider=provider,
            operation=operation,
            attribution=attribution,
            only_if_alone=True,
        )
        call._label = label
        return call

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        silent = _SilentOnce(fn)
        # The span's name while the function may still be a scope rather than the call.
        label = getattr(fn, "__qualname__", None) or "observe"
        if inspect.iscoroutinefunction(fn):
            async_fn: Callable[P, Awaitable[Any]] = fn

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                call = new_call(label)
                try:
                    with call:
                        result = await async_fn(*args, **kwargs)
                        _adopt(call, result)
                    return result
                finally:
                    silent.check(call)

            return async_wrapper  # type: ignore[return-value]  # same signature, async

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            call = new_call(label)
            try:
                with call:
                    result = fn(*args, **kwargs)
                    _adopt(call, result)
                return result
            finally:
                silent.check(call)

        return wrapper

    if func is not None:
        return decorate(func)
    return decorate


def _adopt(call: TrackedCall, result: Any) -> None:
    """Take model and usage from a returned provider response, if it is one."""
    if getattr(result, "usage", None) is None:
        return
    if call.model is None:
        model = getattr(result, "model", None)
        if isinstance(model, str) and model:
            call.model = model
    call.set_response(result)


class _SilentOnce:
    """Warns, the first time only, that a decorated function recorded nothing.

    Once is enough to be seen and never floods a log: a function that learns no model learns none
    on any call.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"
        self._warned = False

    def check(self, call: TrackedCall) -> None:
        if self._warned:
            return
        try:
            # Not `call.recorded` first: reading it would record the call on this thread.
            if call.model or call._children or call.recorded is not None:
                return
            if not get_runtime().enabled:
                return
            self._warned = True
            log.warning(
                "aivitals: @observe on %s recorded nothing: no instrumented call ran inside it and "
                "it has no model (name one with @aivitals.observe(model=...), return the "
                "provider's response, or instrument the client); said once",
                self._name,
            )
        except Exception:  # the SDK never raises into the application
            log.debug("aivitals: could not check what @observe recorded", exc_info=True)
