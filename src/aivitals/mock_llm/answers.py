"""What the mock answers when asked for a particular kind of answer (``X-Mock-Answer``), so the
quality evaluators can be tested end to end: refusals and polite answers that are not, empty
answers, JSON that parses, does not, or breaks the schema the tests give, and answers leaking
personal data (with a lookalike that is not: a number failing the Luhn check).

>>> ANSWERS["card"]
'The card on file is 4111 1111 1111 1111, expiring 12/29.'
>>> pieces("one two three", max_pieces=2)
['one ', 'two three']
"""

from __future__ import annotations

import re
from typing import Literal, get_args

AnswerKind = Literal[
    "refusal",
    "polite",
    "empty",
    "json",
    "invalid_json",
    "json_off_schema",
    "email",
    "phone",
    "card",
    "not_luhn",
    "iban",
    "api_key",
]
ANSWER_KINDS: tuple[AnswerKind, ...] = get_args(AnswerKind)

REFUSAL_SENTENCE = "I'm sorry, but I can't help with that request."
"""A refusal's text: OpenAI's ``message.refusal`` (and the Responses API's refusal part)."""

# A fake key in OpenAI's project-key shape: long enough to look like one, valid for nothing.
_FAKE_KEY = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7dEf0hIj3kLm6n"

ANSWERS: dict[AnswerKind, str] = {
    "refusal": REFUSAL_SENTENCE,
    "polite": "I'm happy to help! The capital of France is Paris.",
    "empty": "",
    "json": '{"city": "Paris", "population": 2102650}',
    "invalid_json": '{"city": "Paris", "population": ',
    # Parses, but a schema asking for a string city and an integer population refuses it.
    "json_off_schema": '{"city": 75, "population": "many"}',
    "email": "You can reach our support team at jane.doe@northwind-mail.com any time.",
    "phone": "Call our office on +44 20 7946 0958 during business hours.",
    "card": "The card on file is 4111 1111 1111 1111, expiring 12/29.",
    "not_luhn": "Your order number is 4111 1111 1111 1112.",
    "iban": "Please wire the amount to DE89 3704 0044 0532 0130 00 by Friday.",
    "api_key": f"Set OPENAI_API_KEY={_FAKE_KEY} in your environment.",
}

_WORDS = re.compile(r"\s*\S+\s*|\s+")


def pieces(text: str, *, max_pieces: int) -> list[str]:
    """``text`` in at most ``max_pieces`` runs of whole words (their spaces kept), as streamed."""
    words = _WORDS.findall(text)
    count = min(len(words), max_pieces)
    if count == 0:
        return []
    return [
        "".join(words[len(words) * i // count : len(words) * (i + 1) // count])
        for i in range(count)
    ]
