"""Masking what the detectors found: ``[email]``, ``[phone]``, ``[card]``, ``[iban]``, ``[secret]``.

>>> from aivitals.detectors.pii import find_pii
>>> text = "Mail jane.doe@acme.io, card 4111 1111 1111 1111, ref TICKET-42."
>>> redact(text, find_pii(text), extra_patterns=[r"TICKET-\\d+"])
'Mail [email], card [card], ref [redacted].'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from aivitals.detectors.finding import Finding

EXTRA = "redacted"
"""The mask of a user pattern's match: ``[redacted]``."""


def redact(
    text: str,
    findings: Sequence[Finding],
    *,
    extra_patterns: Iterable[str | re.Pattern[str]] = (),
) -> str:
    """``text`` with each finding replaced by ``[kind]`` and each match of ``extra_patterns``
    (the user's own: employee ids, internal hostnames) by ``[redacted]``.

    Overlapping spans are merged into one mask, named by the span that starts first.
    """
    spans = [(f.start, f.end, str(f.kind)) for f in findings]
    for pattern in extra_patterns:
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        spans.extend(
            (m.start(), m.end(), EXTRA) for m in compiled.finditer(text) if m.end() > m.start()
        )
    if not spans:
        return text
    spans.sort()
    parts: list[str] = []
    cursor = 0
    for start, end, kind in spans:
        if start < cursor:  # inside the previous mask: widen it
            cursor = max(cursor, end)
            continue
        parts.append(text[cursor:start])
        parts.append(f"[{kind}]")
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)
