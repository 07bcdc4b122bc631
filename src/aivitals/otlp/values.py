"""OTLP attribute values (``AnyValue``) as plain Python values.

An ``AnyValue`` holds one of string, bool, int, double, array or key-value list (or bytes);
arrays become lists, and key-value lists and bytes, which no convention we read uses, become
``None``. `aivitals.otlp.facts` decodes only the attributes it reads, with these.

>>> from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue
>>> any_value(AnyValue(int_value=12)), any_value(AnyValue(array_value=ArrayValue(values=[
...     AnyValue(string_value="stop")])))
(12, ['stop'])
"""

from __future__ import annotations

from typing import Protocol

from opentelemetry.proto.common.v1.common_pb2 import AnyValue

Value = str | bool | int | float | list["Value"] | None

SCALARS = frozenset({"string_value", "bool_value", "int_value", "double_value"})
"""The ``AnyValue`` kinds that hold one plain value."""
_MAX_ARRAY = 64  # finish reasons and the like are short; a huge array is not ours to walk


class KeyValueLike(Protocol):
    """An OTLP ``KeyValue``, as far as reading it goes."""

    @property
    def key(self) -> str: ...
    @property
    def value(self) -> AnyValue: ...


def any_value(value: AnyValue) -> Value:
    """The Python value of one ``AnyValue``; ``None`` for an empty one, a map or bytes."""
    kind = value.WhichOneof("value")
    if kind in SCALARS:
        scalar: str | bool | int | float = getattr(value, kind)
        return scalar
    if kind == "array_value":
        return array_value(value)
    return None


def array_value(value: AnyValue) -> list[Value]:
    """The items of an ``AnyValue`` holding an array (at most the first 64), as `any_value`'s."""
    # A non-empty text is its item's value whatever else: one access for the usual item.
    return [item.string_value or any_value(item) for item in value.array_value.values[:_MAX_ARRAY]]
