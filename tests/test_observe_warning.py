"""``@aivitals.observe`` says, once, when it records nothing.

A decorated function that makes no instrumented call and names no model left no trace and said
nothing (issue 11, the first hour): now the first such call logs one warning naming the function.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

import aivitals
from tests.conftest import Recorded


def said_nothing(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "recorded nothing" in r.getMessage()]


def test_a_function_that_records_nothing_warns_once_naming_itself(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    @aivitals.observe(feature="summarise")
    def summarise(text: str) -> str:
        return text[:5]  # an uninstrumented client's answer, say: no model, no usage

    with caplog.at_level(logging.WARNING, logger="aivitals.sdk"):
        assert [summarise("a long text") for _ in range(3)] == ["a lon"] * 3
    (warning,) = said_nothing(caplog)
    assert "summarise" in warning and "model=" in warning
    assert recorded.calls() == []


def test_an_async_function_that_records_nothing_warns_once(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    @aivitals.observe
    async def answer() -> str:
        return "42"

    async def twice() -> list[str]:
        return [await answer(), await answer()]

    with caplog.at_level(logging.WARNING, logger="aivitals.sdk"):
        assert asyncio.run(twice()) == ["42", "42"]
    assert len(said_nothing(caplog)) == 1


def test_no_warning_when_it_records_its_own_call_or_one_inside(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    @aivitals.observe(model="gpt-4o-mini")
    def named() -> str:
        return "ok"

    @aivitals.observe(feature="search")
    def scope() -> str:
        with aivitals.track(model="gpt-4o") as call:
            call.set_usage(input_tokens=10, output_tokens=2)
        return "ok"

    with caplog.at_level(logging.WARNING, logger="aivitals.sdk"):
        assert (named(), scope()) == ("ok", "ok")
    assert said_nothing(caplog) == []
    assert sorted(call.model for call in recorded.calls()) == ["gpt-4o", "gpt-4o-mini"]
