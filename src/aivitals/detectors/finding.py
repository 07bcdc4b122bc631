"""`Finding`: where a detector found something in a text, and what kind of thing it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["email", "phone", "card", "iban", "secret"]

KINDS: tuple[Kind, ...] = ("email", "phone", "card", "iban", "secret")


@dataclass(frozen=True, slots=True)
class Finding:
    """``text[start:end]`` is a ``kind``; ``detail`` narrows it (a secret's issuer, say).

    A finding holds offsets, never the text it found: it may be logged or counted safely.
    """

    kind: Kind
    start: int
    end: int
    detail: str = ""
