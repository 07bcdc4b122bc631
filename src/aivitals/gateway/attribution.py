"""Who and what a gateway request is for, read from ``X-Aivitals-*`` headers and the body.

>>> read_attribution({"x-aivitals-team": "search", "x-aivitals-tag-exp": "b"}, {"user": "u-1"})
Attribution(user='u-1', feature=None, team='search', endpoint=None, prompt_version=None, environment=None, tags={'exp': 'b'})

A value longer than its store column is cut to it; what cannot be cut into something the store
holds is refused before the upstream is asked (the call could not be recorded otherwise):

>>> read_attribution({"x-aivitals-tag-" + "k" * 129: "v"}, {})
Traceback (most recent call last):
...
aivitals.gateway.attribution.AttributionError: x-aivitals-tag-<key>: the key is over 128 characters
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aivitals.bounds import CALL_TEXT_CHARS, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS, MAX_TAGS
from aivitals.model import clean_text
from aivitals.sdk.context import Attribution

_HEADERS = {
    "x-aivitals-user": "user",
    "x-aivitals-feature": "feature",
    "x-aivitals-team": "team",
    "x-aivitals-prompt-version": "prompt_version",
    "x-aivitals-environment": "environment",
}
_TAG = "x-aivitals-tag-"
MAX_VALUE = CALL_TEXT_CHARS["user"]
"""The longest ``user``, ``feature``, ``team`` and ``prompt_version``; ``environment`` is shorter."""


class AttributionError(ValueError):
    """An attribution the store cannot hold; ``param`` names the header or field."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param}: {problem}")
        self.param = param


def read_attribution(headers: Mapping[str, str], body: Mapping[str, Any]) -> Attribution:
    """Headers win over the body's OpenAI ``user`` field; raises `AttributionError`."""
    values: dict[str, str] = {}
    tags: dict[str, str] = {}
    for key, value in headers.items():
        lower = key.lower()
        if lower in _HEADERS:
            field = _HEADERS[lower]
            values[field] = value[: CALL_TEXT_CHARS[field]]
        elif lower.startswith(_TAG) and len(lower) > len(_TAG):
            name = lower[len(_TAG) :]
            if len(name) > MAX_TAG_KEY_CHARS:
                raise AttributionError(
                    f"{_TAG}<key>", f"the key is over {MAX_TAG_KEY_CHARS} characters"
                )
            tags[name] = value[:MAX_TAG_VALUE_CHARS]
    if len(tags) > MAX_TAGS:
        raise AttributionError(f"{_TAG}<key>", f"at most {MAX_TAGS} tags, got {len(tags)}")
    user = body.get("user")
    if "user" not in values and isinstance(user, str) and user:
        # Header values arrive as Latin-1 text, always clean; a JSON string may hold anything.
        if not clean_text(user):
            raise AttributionError("user", "must be valid UTF-8 text: no lone surrogate, no NUL")
        values["user"] = user[:MAX_VALUE]
    return Attribution(
        user=values.get("user"),
        feature=values.get("feature"),
        team=values.get("team"),
        prompt_version=values.get("prompt_version"),
        environment=values.get("environment"),
        tags=tags,
    )
