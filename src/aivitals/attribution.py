"""Who and what a call is for: `Attribution`, and the ``X-Aivitals-*`` headers that carry it.

One home for every source: the SDK (`aivitals.context`, `track`, an instrumented client's
``extra_headers``), the gateway (a request's headers and its body's ``user``) and the ingest API
(the call's own fields) all build the same `Attribution`, with the same names and the same
limits (`aivitals.bounds`, the store's columns).

>>> attribution_from_headers({"X-Aivitals-Team": "search", "x-aivitals-tag-exp": "b"},
...                          user="u-1")
Attribution(user='u-1', feature=None, team='search', endpoint=None, prompt_version=None, environment=None, tags={'exp': 'b'})

A value longer than its store column is cut to it; what cannot be cut into something the store
holds is refused with the header or field it came from:

>>> attribution_from_headers({"x-aivitals-tag-" + "k" * 129: "v"})
Traceback (most recent call last):
...
aivitals.attribution.AttributionError: x-aivitals-tag-<key>: the key is over 128 characters
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aivitals.bounds import CALL_TEXT_CHARS, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS, MAX_TAGS
from aivitals.model import clean_text


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who and what a call is for; every field optional, ``tags`` free-form."""

    user: str | None = None
    feature: str | None = None
    team: str | None = None
    endpoint: str | None = None
    prompt_version: str | None = None
    environment: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def merged(
        self,
        *,
        user: str | None = None,
        feature: str | None = None,
        team: str | None = None,
        endpoint: str | None = None,
        prompt_version: str | None = None,
        environment: str | None = None,
        tags: Mapping[str, object] | None = None,
    ) -> Attribution:
        """This attribution with the given values on top (``None`` keeps the current value)."""
        if (
            user is None
            and feature is None
            and team is None
            and endpoint is None
            and prompt_version is None
            and environment is None
            and not tags
        ):
            return self
        return Attribution(
            user=user if user is not None else self.user,
            feature=feature if feature is not None else self.feature,
            team=team if team is not None else self.team,
            endpoint=endpoint if endpoint is not None else self.endpoint,
            prompt_version=prompt_version if prompt_version is not None else self.prompt_version,
            environment=environment if environment is not None else self.environment,
            tags={**self.tags, **{str(k): str(v) for k, v in tags.items()}} if tags else self.tags,
        )

    def over(self, base: Attribution) -> Attribution:
        """``base`` with this attribution's values on top."""
        return base.merged(
            user=self.user,
            feature=self.feature,
            team=self.team,
            endpoint=self.endpoint,
            prompt_version=self.prompt_version,
            environment=self.environment,
            tags=self.tags,
        )


EMPTY = Attribution()

HEADERS: Mapping[str, str] = {
    "x-aivitals-user": "user",
    "x-aivitals-feature": "feature",
    "x-aivitals-team": "team",
    "x-aivitals-prompt-version": "prompt_version",
    "x-aivitals-environment": "environment",
}
"""Header (lower case) to `Attribution` field: what the gateway reads and an instrumented
client's ``extra_headers`` may carry."""

TAG_HEADER_PREFIX = "x-aivitals-tag-"
"""``X-Aivitals-Tag-<key>: <value>`` adds a tag."""


class AttributionError(ValueError):
    """An attribution the store cannot hold; ``param`` names the header or field."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param}: {problem}")
        self.param = param


def attribution_from_headers(headers: Mapping[str, object], *, user: object = None) -> Attribution:
    """The attribution that ``X-Aivitals-*`` headers carry; ``user`` (a body's) when no header names one.

    Values are cut to their store columns; raises `AttributionError` for what cannot be cut
    into something the store holds (too many tags, a tag key over its limit, a user that is
    not valid text).
    """
    values: dict[str, str] = {}
    tags: dict[str, str] = {}
    for key, raw in headers.items():
        lower = str(key).lower()
        value = str(raw)
        if lower in HEADERS:
            name = HEADERS[lower]
            values[name] = value[: CALL_TEXT_CHARS[name]]
        elif lower.startswith(TAG_HEADER_PREFIX) and len(lower) > len(TAG_HEADER_PREFIX):
            tag = lower[len(TAG_HEADER_PREFIX) :]
            if len(tag) > MAX_TAG_KEY_CHARS:
                raise AttributionError(
                    f"{TAG_HEADER_PREFIX}<key>", f"the key is over {MAX_TAG_KEY_CHARS} characters"
                )
            tags[tag] = value[:MAX_TAG_VALUE_CHARS]
    if len(tags) > MAX_TAGS:
        raise AttributionError(
            f"{TAG_HEADER_PREFIX}<key>", f"at most {MAX_TAGS} tags, got {len(tags)}"
        )
    if "user" not in values and isinstance(user, str) and user:
        # Header values arrive as Latin-1 text, always clean; a JSON string may hold anything.
        if not clean_text(user):
            raise AttributionError("user", "must be valid UTF-8 text: no lone surrogate, no NUL")
        values["user"] = user[: CALL_TEXT_CHARS["user"]]
    return Attribution(
        user=values.get("user"),
        feature=values.get("feature"),
        team=values.get("team"),
        prompt_version=values.get("prompt_version"),
        environment=values.get("environment"),
        tags=tags,
    )
