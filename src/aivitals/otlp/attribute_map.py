"""Which span and resource attributes say who and what a call is for: `AttributeMap`.

Each `Attribution` field is read from a list of attribute names, the first one present winning,
a span's own attribute before its resource's. The user, the environment and the kept tags
follow the conventions in use; feature, team and prompt version have no convention at all, so
they are configurable (``aivitals serve --otlp-attribute feature=app.feature``):

>>> amap = AttributeMap.from_pairs(["feature=app.feature", "tag.customer=app.customer_id"])
>>> amap.feature, dict(amap.tags)["customer"]
(('app.feature',), ('app.customer_id',))
>>> AttributeMap().team
('aivitals.team', 'app.team', 'team')

A pair naming a field replaces that field's defaults (repeat it to give several names, most
trusted first); ``tag.<name>=<attribute>`` keeps one more attribute as the tag ``<name>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from aivitals.bounds import MAX_TAG_KEY_CHARS

FIELDS = ("user", "feature", "team", "prompt_version", "environment", "endpoint")
"""The `Attribution` fields a pair may name (``tag.<name>`` adds a tag)."""

Names = tuple[str, ...]

_DEFAULT_TAGS: tuple[tuple[str, Names], ...] = (
    ("session.id", ("session.id", "traceloop.association.properties.session_id")),
    ("gen_ai.conversation.id", ("gen_ai.conversation.id",)),
    ("service.name", ("service.name",)),
)


@dataclass(frozen=True, slots=True)
class AttributeMap:
    """Attribute names per `Attribution` field (most trusted first) and per kept tag.

    ``tags`` pairs each kept tag's name with its attribute names. Frozen and hashable: the
    mapping compiles each map it is given once.
    """

    user: tuple[str, ...] = (
        "user.id",
        "enduser.id",
        "gen_ai.user",
        "gen_ai.request.user",
        "traceloop.association.properties.user_id",
        "aivitals.user",
    )
    feature: tuple[str, ...] = ("aivitals.feature", "app.feature", "feature")
    team: tuple[str, ...] = ("aivitals.team", "app.team", "team")
    prompt_version: tuple[str, ...] = (
        "aivitals.prompt_version",
        "llm.prompt_template.version",  # OpenInference
        "traceloop.prompt.version",
        "app.prompt_version",
    )
    environment: tuple[str, ...] = (
        "deployment.environment.name",
        "deployment.environment",
        "aivitals.environment",
    )
    endpoint: tuple[str, ...] = ("aivitals.endpoint",)
    tags: tuple[tuple[str, Names], ...] = _DEFAULT_TAGS

    @classmethod
    def from_pairs(cls, pairs: Iterable[str]) -> AttributeMap:
        """The defaults with ``field=attribute`` pairs on top; raises ValueError naming a bad pair."""
        names: dict[str, list[str]] = {}
        tags: dict[str, list[str]] = {}
        for pair in pairs:
            target, eq, attribute = pair.partition("=")
            target, attribute = target.strip(), attribute.strip()
            if not eq or not target or not attribute:
                raise ValueError(f"{pair!r}: expected FIELD=ATTRIBUTE, e.g. feature=app.feature")
            if target.startswith("tag."):
                tag = target[4:]
                if not tag or len(tag) > MAX_TAG_KEY_CHARS:
                    raise ValueError(f"{pair!r}: a tag name is 1 to {MAX_TAG_KEY_CHARS} characters")
                tags.setdefault(tag, []).append(attribute)
            elif target in FIELDS:
                names.setdefault(target, []).append(attribute)
            else:
                raise ValueError(
                    f"{pair!r}: unknown field {target!r}; one of {', '.join(FIELDS)} or tag.<name>"
                )
        base = cls()
        merged_tags = {**dict(base.tags), **{k: tuple(v) for k, v in tags.items()}}
        fields = {name: tuple(value) for name, value in names.items()}
        return replace(base, tags=tuple(merged_tags.items()), **fields)


DEFAULT = AttributeMap()
