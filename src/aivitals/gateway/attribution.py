"""Who and what a gateway request is for, read from ``X-Aivitals-*`` headers and the body.

>>> read_attribution({"x-aivitals-team": "search", "x-aivitals-tag-exp": "b"}, {"user": "u-1"})
Attribution(user='u-1', feature=None, team='search', endpoint=None, prompt_version=None, environment=None, tags={'exp': 'b'})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aivitals.sdk.context import Attribution

_HEADERS = {
    "x-aivitals-user": "user",
    "x-aivitals-feature": "feature",
    "x-aivitals-team": "team",
    "x-aivitals-prompt-version": "prompt_version",
    "x-aivitals-environment": "environment",
}
_TAG = "x-aivitals-tag-"
MAX_VALUE = 200  # longer attribution values are cut: they become store columns and labels


def read_attribution(headers: Mapping[str, str], body: Mapping[str, Any]) -> Attribution:
    """Headers win over the body's OpenAI ``user`` field."""
    values: dict[str, str] = {}
    tags: dict[str, str] = {}
    for key, value in headers.items():
        lower = key.lower()
        if lower in _HEADERS:
            values[_HEADERS[lower]] = value[:MAX_VALUE]
        elif lower.startswith(_TAG) and len(lower) > len(_TAG):
            tags[lower[len(_TAG) :]] = value[:MAX_VALUE]
    user = body.get("user")
    if "user" not in values and isinstance(user, str) and user:
        values["user"] = user[:MAX_VALUE]
    return Attribution(
        user=values.get("user"),
        feature=values.get("feature"),
        team=values.get("team"),
        prompt_version=values.get("prompt_version"),
        environment=values.get("environment"),
        tags=tags,
    )
