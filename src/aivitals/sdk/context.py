"""Attribution that flows with the code: who and what a call is for.

`context()` (and `track`/`observe`) set attribution for everything recorded inside them, across
threads' own contexts and asyncio tasks alike (contextvars). Inner values win over outer ones.

>>> with context(team="search", user="u-42"):
...     with context(feature="autocomplete"):
...         current_attribution().team, current_attribution().feature
('search', 'autocomplete')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from aivitals.attribution import EMPTY as _EMPTY
from aivitals.attribution import Attribution

_attribution: ContextVar[Attribution] = ContextVar("aivitals_attribution", default=_EMPTY)
_last_call_id: ContextVar[str | None] = ContextVar("aivitals_last_call_id", default=None)


def current_attribution() -> Attribution:
    return _attribution.get()


@contextmanager
def context(
    *,
    user: str | None = None,
    feature: str | None = None,
    team: str | None = None,
    endpoint: str | None = None,
    prompt_version: str | None = None,
    environment: str | None = None,
    tags: Mapping[str, object] | None = None,
) -> Iterator[Attribution]:
    """Attribute every call recorded inside the block (a web request's user, a job's feature...)."""
    token = _attribution.set(
        _attribution.get().merged(
            user=user,
            feature=feature,
            team=team,
            endpoint=endpoint,
            prompt_version=prompt_version,
            environment=environment,
            tags=tags,
        )
    )
    try:
        yield _attribution.get()
    finally:
        _attribution.reset(token)


def last_call_id() -> str | None:
    """The id of the call most recently recorded in this context: score it with `aivitals.score`.

    Instrumented clients return the provider's own response object untouched, so this is how to
    find the id of the call behind it.
    """
    return _last_call_id.get()


def set_last_call_id(call_id: str) -> None:
    _last_call_id.set(call_id)
