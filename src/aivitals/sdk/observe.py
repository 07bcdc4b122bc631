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
returned OpenAI or Anthropic response.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from aivitals.attribution import Attribution
from aivitals.model import Operation
from aivitals.sdk.track import TrackedCall

P = ParamSpec("P")
R = TypeVar("R")


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

    def new_call() -> TrackedCall:
        return TrackedCall(
            model=model,
            provider=provider,
            operation=operation,
            attribution=attribution,
            only_if_alone=True,
        )

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            async_fn: Callable[P, Awaitable[Any]] = fn

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with new_call() as call:
                    result = await async_fn(*args, **kwargs)
                    _adopt(call, result)
                    return result

            return async_wrapper  # type: ignore[return-value]  # same signature, async

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with new_call() as call:
                result = fn(*args, **kwargs)
                _adopt(call, result)
                return result

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
