"""`@aivitals.observe` records nothing when it learns no model, as the README warns."""

from __future__ import annotations

from pathlib import Path

import aivitals

from .conftest import Recorded

README = Path(__file__).resolve().parent.parent / "README.md"


def test_observe_without_a_model_or_an_instrumented_call_records_nothing(
    recorded: Recorded,
) -> None:
    @aivitals.observe(feature="summarise")
    def summarise(text: str) -> str:
        return text[:10]  # as if an uninstrumented client had answered

    @aivitals.observe(feature="summarise", model="gpt-4o-mini")
    def named(text: str) -> str:
        return text[:10]

    summarise("a long document")
    assert recorded.calls() == []
    named("a long document")
    [call] = recorded.calls()
    assert (call.model, call.feature) == ("gpt-4o-mini", "summarise")


def test_the_readme_warns_of_it() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "What `observe` records." in text
    assert "If it learns none, the call is not recorded at all" in text
