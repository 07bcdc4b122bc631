"""A span's attributes read once into facts: for each fact, the value of its most trusted name.

`aivitals.otlp.conventions` lists, per fact (the model, the input tokens, the user...), the
attribute names every convention gives it, most trusted first; `FactTable` compiles those lists,
with the `AttributeMap`'s, into one lookup, so a span's attributes are walked once and each is
looked up once. (A span carries far more attributes than a call needs; the walk is the mapping's
main cost, so it is done here, once, rather than name by name for every fact.)

>>> from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
>>> table = table_for(DEFAULT)
>>> values, names = table.read([
...     KeyValue(key="gen_ai.usage.prompt_tokens", value=AnyValue(int_value=7)),
...     KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=12)),
...     KeyValue(key="gen_ai.prompt.0.content", value=AnyValue(string_value="hi"))])
>>> values[INPUT], names[INPUT]
(12, 'gen_ai.usage.input_tokens')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

from aivitals.bounds import CALL_TEXT_CHARS, MAX_TAG_VALUE_CHARS
from aivitals.otlp import conventions as names_of
from aivitals.otlp.attribute_map import DEFAULT, AttributeMap
from aivitals.otlp.content import CONTENT_PREFIXES
from aivitals.otlp.values import SCALARS, KeyValueLike, Value, array_value

(
    CALL_ID,
    PROVIDER,
    OPERATION,
    OPENINFERENCE_KIND,
    REQUEST_TYPE,
    MODEL,
    RESPONSE_MODEL,
    PARAMETERS,
    STREAM,
    INPUT,
    OUTPUT,
    TOTAL,
    CACHE_READ,
    CACHE_WRITE,
    REASONING,
    TTFT_SECONDS,
    FINISH_REASONS,
    ERROR_TYPE,
    HTTP_STATUS,
    SERVICE_TIER,
    OWN_STATUS,
    CACHE,
    TOKENS_ESTIMATED,
    AGENT,
    CONTENT,
) = range(25)
"""The facts of a call, as indices into `FactTable.read`'s lists. An empty text, or a value
that is no plain value (a map, bytes), is as good as absent and leaves the next name its turn.
``CONTENT`` is True when an attribute's name is one a span's messages may be under
(`aivitals.otlp.content.CONTENT_PREFIXES`): a span without one has no content to read later."""

_CALL_FACTS: tuple[tuple[str, ...], ...] = (
    names_of.CALL_ID,
    names_of.PROVIDER,
    (names_of.OPERATION,),
    (names_of.OPENINFERENCE_KIND,),
    (names_of.TRACELOOP_REQUEST_TYPE,),
    names_of.MODEL,
    names_of.RESPONSE_MODEL,
    names_of.INVOCATION_PARAMETERS,
    names_of.STREAM,
    names_of.INPUT_TOKENS,
    names_of.OUTPUT_TOKENS,
    names_of.TOTAL_TOKENS,
    names_of.CACHE_READ_TOKENS,
    names_of.CACHE_WRITE_TOKENS,
    names_of.REASONING_TOKENS,
    names_of.TTFT_SECONDS,
    names_of.FINISH_REASONS,
    (names_of.ERROR_TYPE,),
    names_of.HTTP_STATUS,
    names_of.SERVICE_TIER,
    names_of.OWN_STATUS,
    names_of.CACHE,
    names_of.TOKENS_ESTIMATED,
    names_of.AGENT,
    (),  # CONTENT: by prefix, not by name
)
FIRST_ATTRIBUTION = len(_CALL_FACTS)
"""Facts from here on are attribution: `ATTRIBUTION_FIELDS` in order, then one per kept tag."""

ATTRIBUTION_FIELDS = ("user", "feature", "team", "endpoint", "prompt_version", "environment")
_COUNTS = frozenset({INPUT, OUTPUT, TOTAL, CACHE_READ, CACHE_WRITE, REASONING, HTTP_STATUS})
"""Facts whose values are ints: their ``AnyValue`` is read as an int first, the others as text."""

Slot = tuple[int, int, str, bool]
"""An attribute name's fact, its rank among the fact's names, the ``AnyValue`` field its value is
read from first, and whether the name is one a span's messages may be under."""

_Known = tuple[int, int, str, bool, Value]
"""What one encoded attribute says: its fact (-1 for none), the name's rank, the name, whether a
span's messages may be under it, and its value as `FactTable.read` keeps it (None: absent)."""
_KNOWN = 4096  # distinct encoded attributes remembered (models, providers, users, flags...)
_KNOWN_BYTES = 96  # no long text: it would rarely repeat, and costs memory


class FactTable:
    """The compiled name lists of every fact: one attribute name to (fact, rank)."""

    __slots__ = ("_empty", "_known", "_resource_slots", "_slots", "limits", "size", "tags")

    def __init__(self, attribute_map: AttributeMap) -> None:
        facts = list(_CALL_FACTS)
        facts.extend(getattr(attribute_map, field) for field in ATTRIBUTION_FIELDS)
        facts.extend(attribute_names for _, attribute_names in attribute_map.tags)
        self.size = len(facts)
        self.tags = tuple(tag for tag, _ in attribute_map.tags)
        """The kept tags' names, in fact order after the attribution fields."""
        self.limits = (
            *(CALL_TEXT_CHARS[field] for field in ATTRIBUTION_FIELDS),
            *(MAX_TAG_VALUE_CHARS for _ in self.tags),
        )
        """The longest text of each attribution fact, its store column's."""
        slots: dict[str, Slot] = {}
        for fact, attribute_names in enumerate(facts):
            kind = "int_value" if fact in _COUNTS else "string_value"
            for rank, name in enumerate(attribute_names):
                # A name in two lists (none today) fills the first fact that lists it.
                slots.setdefault(name, (fact, rank, kind, name.startswith(CONTENT_PREFIXES)))
        self._slots = slots
        self._resource_slots = {
            name: slot for name, slot in slots.items() if slot[0] >= FIRST_ATTRIBUTION
        }
        self._empty: list[Value] = [None] * self.size
        # Shared by the receiver's threads: a dict's get and set are atomic under the GIL, and
        # an entry lost to a clear costs one read of its attribute.
        self._known: dict[bytes, _Known] = {}

    def read(self, kvs: Iterable[KeyValueLike]) -> tuple[list[Value], list[str | None]]:
        """Each fact's value (None when absent) and the attribute name it was read from."""
        return self._read(kvs, self._slots, CONTENT_PREFIXES)

    def read_resource(self, kvs: Iterable[KeyValueLike]) -> list[Value]:
        """A resource's attribution facts (the others are no resource's to say)."""
        return self._read(kvs, self._resource_slots, ())[0]

    def _read(
        self,
        kvs: Iterable[KeyValueLike],
        slots: dict[str, Slot],
        content_prefixes: tuple[str, ...],
    ) -> tuple[list[Value], list[str | None]]:
        # The mapping's hottest loop (upb makes a Python object of each KeyValue, its key and
        # its value): each attribute costs one dict lookup and, when it is a fact, one read of
        # its value in the kind the fact expects; the ranks are looked at only when a second
        # name of one fact turns up.
        values = self._empty.copy()
        names: list[str | None] = [None] * self.size
        content = False
        for kv in kvs:
            key = kv.key
            slot = slots.get(key)
            if slot is None:
                if not content and key.startswith(content_prefixes):
                    content = True
                continue
            fact, rank, kind, of_content = slot
            if of_content:
                content = True
            held = names[fact]
            if held is not None and rank >= slots[held][1]:
                continue
            value = kv.value
            decoded: Value = getattr(value, kind)
            if not decoded:
                found = value.WhichOneof("value")
                if found is None:
                    continue
                if found in SCALARS:
                    decoded = getattr(value, found)
                else:
                    decoded = array_value(value) if found == "array_value" else None
                if decoded is None or decoded == "":
                    continue  # empty: OpenLIT's gen_ai.request.user "" names no user
            values[fact] = decoded
            names[fact] = key
        if content:
            values[CONTENT] = True
        return values, names

    def read_encoded(
        self, blobs: Sequence[bytes], kvs: Sequence[KeyValueLike]
    ) -> tuple[list[Value], list[str | None]]:
        """`read` of one span's attributes, given both as decoded (``kvs``) and as the bytes of
        each ``KeyValue`` (``blobs``, `aivitals.otlp.encoded`), in the same order.

        An attribute whose encoding was seen lately (a model, a provider, a user, a finish
        reason: most of a span's attributes repeat from span to span) is known by a dictionary
        lookup of its bytes, with no Python object made for it; any other is read from ``kvs``
        as `read` does, and remembered. Same facts, same names, same order of precedence.
        """
        known = self._known
        slots = self._slots
        values = self._empty.copy()
        names: list[str | None] = [None] * self.size
        content = False
        for index, blob in enumerate(blobs):
            entry = known.get(blob)
            if entry is None:
                kv = kvs[index]
                key = kv.key
                slot = slots.get(key)
                if slot is None:
                    entry = (-1, 0, key, key.startswith(CONTENT_PREFIXES), None)
                else:
                    fact, rank, kind, of_content = slot
                    value = kv.value
                    decoded: Value = getattr(value, kind)
                    if not decoded:
                        found = value.WhichOneof("value")
                        if found in SCALARS:
                            decoded = getattr(value, found)
                        elif found == "array_value":
                            decoded = array_value(value)
                        else:
                            decoded = None
                        if decoded == "":
                            decoded = None
                    entry = (fact, rank, key, of_content, decoded)
                if len(blob) <= _KNOWN_BYTES:
                    if len(known) >= _KNOWN:
                        known.clear()  # bounded; the usual attributes are learnt again at once
                    known[blob] = entry
            fact, rank, name, of_content, decoded = entry
            if of_content:
                content = True
            if decoded is None:  # no fact, or empty: the fact's next name has its turn
                continue
            held = names[fact]
            if held is not None and rank >= slots[held][1]:
                continue
            # A list (finish reasons) is the span's own copy, as `read` gives it.
            values[fact] = decoded.copy() if type(decoded) is list else decoded
            names[fact] = name
        if content:
            values[CONTENT] = True
        return values, names


@lru_cache(maxsize=16)
def table_for(attribute_map: AttributeMap) -> FactTable:
    """The compiled table of ``attribute_map`` (a server keeps one map: compiled once)."""
    return FactTable(attribute_map)


__all__ = ["DEFAULT", "FactTable", "table_for"]
