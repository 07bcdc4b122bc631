"""Records from sources that must never fail: what is invalid is dropped, named, and the rest kept.

The SDK (and any source that observes someone else's work, like the gateway) cannot answer a bad
value with an error: the application it watches must not notice. So it builds the record through
`salvage_call`: the same validator as everywhere (`Call.__post_init__`), and for each field it
refuses, that field is left out (with the fields computed from it, such as the cost from the
tokens) and named in the tag ``aivitals.invalid``. A call without a usable ``id``, ``provider``,
``model``, ``latency_ms``, ``started_at`` or outcome cannot be kept and raises `InvalidRecord`.

>>> call, refusals = salvage_call({"provider": "openai", "model": "gpt-4o", "latency_ms": 5.0,
...                                "user": "u" * 999, "input_tokens": 10**12})
>>> call.user, call.input_tokens, call.cost_usd, call.tags
(None, 0, None, {'aivitals.invalid': 'input_tokens,user'})
>>> [refusal.field for refusal in refusals]
['input_tokens', 'user']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aivitals.bounds import MAX_TAGS
from aivitals.model import Call, InvalidRecord, Score, tags_problem

INVALID_TAG = "aivitals.invalid"
"""The tag that names the fields a call was recorded without, comma-separated."""

REFUSED_PRICE = "refused"
"""The ``price_source`` of a call recorded without its cost (or the tokens it was priced from):
the recorder prices only calls without a source, and a cost from refused tokens would be a guess."""

_TOKENS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_write_1h_tokens",
)
_COST = ("cost_usd", "input_cost_usd", "output_cost_usd", "price_source")

# What goes when a field is refused: a cost priced from refused tokens is not a cost either.
_DROPS: Mapping[str, tuple[str, ...]] = {
    **{name: (*_TOKENS, *_COST, "context_window") for name in _TOKENS},
    **{name: _COST for name in _COST},
    # Fees are priced from the tool uses, as the cost from the tokens.
    "server_tool_uses": ("server_tool_uses", *_COST),
    **{
        name: (name,)
        for name in (
            "trace_id",
            "span_id",
            "parent_span_id",
            "ttft_ms",
            "queue_ms",
            "response_model",
            "tokens_estimated",
            "saved_usd",
            "error_message",
            "http_status",
            "finish_reason",
            "context_window",
            "user",
            "feature",
            "team",
            "endpoint",
            "prompt_version",
            "environment",
            "service_tier",
            "quantization",
        )
    },
    "cache": ("cache", "cache_level"),
    "cache_level": ("cache", "cache_level"),
}
_DEFAULTS: Mapping[str, object] = {
    **dict.fromkeys(_TOKENS, 0),
    "tokens_estimated": False,
    "price_source": REFUSED_PRICE,
}
_SCORE_DROPS = frozenset({"comment", "model", "feature"})


def salvage_call(fields: Mapping[str, Any]) -> tuple[Call, list[InvalidRecord]]:
    """The `Call` of ``fields`` with every refused field left out, and the refusals in order.

    Raises `InvalidRecord` when a field that the call cannot do without is refused.
    """
    current = dict(fields)
    refusals: list[InvalidRecord] = []
    while True:
        try:
            return Call(**current), refusals
        except InvalidRecord as refusal:
            if refusal.field == "tags" and not _dropped("tags", refusals):
                current["tags"] = valid_tags(current.get("tags"))
            elif refusal.field in _DROPS and not _dropped(refusal.field, refusals):
                for name in _DROPS[refusal.field]:
                    current.pop(name, None)
                    if name in _DEFAULTS:
                        current[name] = _DEFAULTS[name]
            else:
                raise
            refusals.append(refusal)
            named = ",".join(dict.fromkeys(item.field for item in refusals))
            current["tags"] = {**valid_tags(current.get("tags"), room=1), INVALID_TAG: named}


def salvage_score(fields: Mapping[str, Any]) -> tuple[Score, list[InvalidRecord]]:
    """The `Score` of ``fields`` without a refused ``comment``, ``model`` or ``feature`` hint.

    Raises `InvalidRecord` for anything else (the value, its range, the name, the call id).
    """
    current = dict(fields)
    refusals: list[InvalidRecord] = []
    while True:
        try:
            return Score(**current), refusals
        except InvalidRecord as refusal:
            if refusal.field not in _SCORE_DROPS or current.get(refusal.field) is None:
                raise
            current[refusal.field] = None
            refusals.append(refusal)


def valid_tags(tags: object, *, room: int = 0) -> dict[str, str]:
    """The tags that pass on their own, in order, at most `MAX_TAGS` less ``room`` of them."""
    if not isinstance(tags, Mapping):
        return {}
    kept: dict[str, str] = {}
    for key, value in tags.items():
        if len(kept) >= MAX_TAGS - room:
            break
        if key != INVALID_TAG and tags_problem({key: value}) is None:
            kept[key] = value
    return kept


def _dropped(field: str, refusals: list[InvalidRecord]) -> bool:
    # A field refused again after it was dropped means the drop did not help: stop, not loop.
    return any(item.field == field for item in refusals)
