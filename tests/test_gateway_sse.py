"""`StreamRelay`: an event that is not a JSON object is passed on untouched and noted."""

from __future__ import annotations

import pytest

from aivitals.gateway.sse import StreamRelay

FIRST = b'data: {"model":"gpt-4o-mini","choices":[{"delta":{"content":"hi"}}]}\n\n'
CONTENT = b'data: {"choices":[{"delta":{"content":" there"}}]}\n\n'
DONE = b"data: [DONE]\n\n"


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (b'data: {"choices":[{"delta":{"cont\n\n', "not JSON"),
        (b"data: [1, 2]\n\n", "not a JSON object"),
        (b"data: oops\n\n", "not a JSON object"),
        (b"data: " + b"{" * 5000 + b"\n\n", "not JSON"),
    ],
    ids=["cut", "array", "text", "deep"],
)
def test_a_bad_event_in_the_middle_is_passed_on_and_noted(bad: bytes, says: str) -> None:
    relay = StreamRelay(strip_usage=False)
    out = relay.feed(FIRST)  # the model is known after this: later events are only skimmed
    out += relay.feed(CONTENT + bad + CONTENT + DONE)
    assert out == FIRST + CONTENT + bad + CONTENT + DONE
    assert relay.done
    assert relay.malformed is not None and says in relay.malformed


def test_a_bad_first_event_is_noted_too() -> None:
    relay = StreamRelay(strip_usage=True)
    bad = b'data: {"id": "chatcmpl-mock", "choi\n\n'
    assert relay.feed(bad + DONE) == bad + DONE
    assert relay.malformed is not None and "not JSON" in relay.malformed


def test_a_good_stream_is_not_malformed() -> None:
    relay = StreamRelay(strip_usage=True)
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
    assert relay.feed(FIRST + CONTENT + b": keep-alive comment\n\n" + usage + DONE) == (
        FIRST + CONTENT + b": keep-alive comment\n\n" + DONE
    )
    assert relay.malformed is None
    assert relay.content_events == 2
