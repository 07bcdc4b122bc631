"""OTLP attribute values (``AnyValue``) as plain Python values, for the keys the mapping reads.

A span carries far more attributes than a `Call` needs (prompts, tool schemas, HTTP details), so
only the keys in ``wanted`` are decoded; the rest are never touched. An ``AnyValue`` holds one of
string, bool, int, double, array or key-value list (bytes too); arrays become lists, key-value
lists and bytes are not used by any convention we read and become ``None``.

>>> from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
>>> kvs = [KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=12)),
...        KeyValue(key="gen_ai.prompt.0.content", value=AnyValue(string_value="hi"))]
>>> attributes(kvs, frozenset({"gen_ai.usage.input_tokens"}))
{'gen_ai.usage.input_tokens': 12}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

Value = str | bool | int | float | list["Value"] | None

_SCALARS = frozenset({"string_value", "bool_value", "int_value", "double_value"})
_MAX_ARRAY = 64  # finish reasons and the like are short; a huge array is not ours to walk


class _KeyValue(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> AnyValue: ...


def any_value(value: AnyValue) -> Value:
    """The Python value of one ``AnyValue``; ``None`` for an empty one, a map or bytes."""
    kind = value.WhichOneof("value")
    if kind in _SCALARS:
        scalar: str | bool | int | float = getattr(value, kind)
        return scalar
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values[:_MAX_ARRAY]]
    return None


def attributes(kvs: Iterable[_KeyValue], wanted: frozenset[str]) -> dict[str, Value]:
    """The attributes among ``kvs`` whose key is in ``wanted``, decoded; a repeated key: the last."""
    # Inlined scalar case: this loop runs for every attribute of every span received.
    found: dict[str, Value] = {}
    for kv in kvs:
        key = kv.key
        if key in wanted:
            value = kv.value
            kind = value.WhichOneof("value")
            found[key] = getattr(value, kind) if kind in _SCALARS else any_value(value)
    return found
