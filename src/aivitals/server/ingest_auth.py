"""The ingest key: who may post calls and scores to ``/api/v1/calls`` and ``/api/v1/scores``.

Compared as SHA-256 digests with `hmac.compare_digest`, so the time taken says nothing about how
much of a wrong key matched. The SDK's exporter sends it as ``Authorization: Bearer`` (its
``api_key``, ``AIVITALS_API_KEY``) and keeps a refused batch in its spool, so a key fixed later
still delivers what was recorded meanwhile.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from aivitals.server.errors import ApiError


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class IngestKey:
    """A route dependency (`require`) that answers 401 without the key."""

    def __init__(self, key: str) -> None:
        if len(key) < 16:
            raise ValueError("the ingest key must be at least 16 characters")
        self._digest = _digest(key)

    def require(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        presented = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
        if not hmac.compare_digest(_digest(presented), self._digest):
            raise ApiError(
                401,
                "missing or wrong ingest key: send Authorization: Bearer <key> "
                "(the SDK's api_key / AIVITALS_API_KEY)",
                headers={"WWW-Authenticate": "Bearer"},
            )
