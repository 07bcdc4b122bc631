"""A call's id from its span's identity, so the same span sent twice is one call.

>>> trace_id, span_id = bytes.fromhex("0af7651916cd43dd8448eb211c80319c"), bytes.fromhex("b7ad6b7169203331")
>>> call_id_for_span(trace_id, span_id, 1_764_590_400_000_000_000)
'019ad9c8-b200-712a-8659-cf8489cbf25a'
>>> call_id_for_span(trace_id, span_id, 1_764_590_400_000_000_000) == _
True
"""

from __future__ import annotations

import re
from hashlib import blake2b

_MS_MASK = (1 << 48) - 1

CALL_ID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
"""A UUID in its canonical text form, as `aivitals.model.new_id` makes them."""


def call_id_for_span(trace_id: bytes, span_id: bytes, start_unix_nano: int) -> str:
    """A deterministic, time-ordered id (UUIDv7 layout) for the call a span describes.

    The first 48 bits are the span's start in Unix milliseconds, as in every UUIDv7, so ids sort
    by time and the store indexes them cheaply; the 74 bits a UUIDv7 leaves random come from a
    hash of the trace and span ids instead, so an exporter's retry maps to the same id.
    """
    digest = blake2b(trace_id + span_id, digest_size=10).digest()
    ms = ((start_unix_nano // 1_000_000) & _MS_MASK).to_bytes(6, "big")
    # Version 7 in the high nibble of byte 6, the RFC 9562 variant (0b10) in the top of byte 8.
    tail = bytes((0x70 | digest[0] & 0x0F, digest[1], 0x80 | digest[2] & 0x3F)) + digest[3:]
    text = (ms + tail).hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
