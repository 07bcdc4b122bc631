"""Builders shared by the tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aivitals.model import Call


def make_call(**overrides: Any) -> Call:
    fields: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "latency_ms": 250.0,
        "input_tokens": 1000,
        "output_tokens": 100,
    }
    fields.update(overrides)
    return Call(**fields)


def at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)
