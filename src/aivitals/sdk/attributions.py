"""The attributions `track` and `observe` build, made once per distinct value instead of per call.

An `Attribution` is a frozen dataclass: building one costs more than the rest of a tracked
call's work on the caller's thread (docs/benchmarks.md, "The SDK"). An application names the
same few features, teams and users over and over, and an attribution never changes once built,
so the same value can be handed to every call that asks for it.

>>> search = (None, "search", None, None, None, None)
>>> of(search) is of(search)
True
>>> over(of((None, None, "core", None, None, None)), of(search)).team
'core'
"""

from __future__ import annotations

import functools

from aivitals.attribution import EMPTY, Attribution

_MAX_MERGES = 4096


Values = tuple[str | None, str | None, str | None, str | None, str | None, str | None]
"""user, feature, team, endpoint, prompt_version, environment: one tuple, the cache's key."""


@functools.lru_cache(maxsize=4096)
def of(values: Values) -> Attribution:
    """``Attribution(...)`` of these values (tags aside: a mapping is no cache key)."""
    user, feature, team, endpoint, prompt_version, environment = values
    return EMPTY.merged(
        user=user,
        feature=feature,
        team=team,
        endpoint=endpoint,
        prompt_version=prompt_version,
        environment=environment,
    )


# (id(base), id(top)) -> (base, top, merged). Keyed by identity because an attribution's tags
# (a dict) make it unhashable; the entry keeps both alive, so an id is never reused while its
# entry stands, and the identity check below makes a stale key harmless anyway. Hand-written:
# functools' caches need hashable arguments.
_merges: dict[tuple[int, int], tuple[Attribution, Attribution, Attribution]] = {}


def over(base: Attribution, top: Attribution) -> Attribution:
    """``top`` over ``base`` (`Attribution.over`): top's values win."""
    if base is EMPTY:
        return top
    if top is EMPTY:
        return base
    key = (id(base), id(top))
    entry = _merges.get(key)
    if entry is not None and entry[0] is base and entry[1] is top:
        return entry[2]
    merged = top if base == EMPTY else top.over(base)
    if len(_merges) >= _MAX_MERGES:
        _merges.clear()  # bounded: an application with more pairs than this just builds more
    _merges[key] = (base, top, merged)
    return merged
