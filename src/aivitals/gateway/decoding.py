"""Request bodies in: JSON decoded to a fixed depth, so no body can reach the recursion limit.

msgspec, the gateway's JSON everywhere else, bounds its depth by Python's recursion limit, minus
however deep the stack already is. A body nested 10,000 levels then raises `RecursionError`
(which nothing expects), and one that only just decodes can fail later, when the cache key or the
injected ``stream_options`` encode it again a few frames deeper. pydantic-core's parser (jiter)
stops at a fixed depth instead, as a plain `ValueError`, and is as fast on request bodies
(about 4 µs for a 3 KB chat body, either way).

>>> decode_body(b'{"model": "m"}')
{'model': 'm'}
>>> decode_body(b"[" * 201 + b"1" + b"]" * 201)
Traceback (most recent call last):
...
aivitals.gateway.decoding.BodyError: request body is nested more than 200 levels deep
"""

from __future__ import annotations

from typing import Any

import pydantic_core

MAX_DEPTH = 200
"""How deep a request body may nest: pydantic-core's own fixed limit, far beyond any real
request (a tool's JSON schema is a few levels), and far below Python's recursion limit."""


class BodyError(ValueError):
    """A request body that is not JSON, or nests too deeply; the message says which."""


def decode_body(raw: bytes) -> Any:
    """Decode a JSON request body; raises `BodyError` naming what is wrong."""
    try:
        return pydantic_core.from_json(raw, allow_inf_nan=False, cache_strings="keys")
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise BodyError(f"request body is nested more than {MAX_DEPTH} levels deep") from None
        raise BodyError(f"request body is not valid JSON: {exc}") from None
