"""Answers mock-llm is told to give, and what each built-in evaluator must say of them: one
table for the SDK's tests and the gateway's (tests/test_content_evaluators.py,
tests/test_content_gateway.py).

Each case names how the request asks (``plain``, ``cut``: a small output limit, ``json_object``,
``json_schema``: the response format with `SCHEMA`, ``tool``: a tool with `SCHEMA` as its
parameters, called by the answer) and the scores expected (1.0: the evaluator found it).
``json_valid`` is expected only where the request asked for JSON or the answer called a tool,
and must be absent elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Ask = Literal["plain", "cut", "json_object", "json_schema", "tool"]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
}
TOOL = "get_city"


@dataclass(frozen=True)
class Case:
    id: str
    headers: dict[str, str]
    expected: dict[str, float]
    ask: Ask = "plain"
    apis: frozenset[str] = field(default=frozenset({"chat", "messages", "responses"}))


CASES = [
    Case(
        "polite",
        {"X-Mock-Answer": "polite"},
        {"empty": 0.0, "truncated": 0.0, "refusal": 0.0, "pii_leak": 0.0},
    ),
    Case("refusal_sentence", {"X-Mock-Answer": "refusal"}, {"refusal": 1.0, "empty": 0.0}),
    # OpenAI's refusal field, Anthropic's refusal stop reason, the Responses API's refusal part.
    Case("refusal_by_provider", {"X-Mock-Finish-Reason": "refusal"}, {"refusal": 1.0}),
    Case(
        "refusal_in_french",
        {
            "X-Mock-Text": "Je%20suis%20d%C3%A9sol%C3%A9%2C%20mais%20je%20ne%20peux%20pas%20vous%20aider%20avec%20cela."
        },
        {"refusal": 1.0},
    ),
    Case("empty", {"X-Mock-Answer": "empty"}, {"empty": 1.0}),
    Case("cut", {}, {"truncated": 1.0, "empty": 0.0}, ask="cut"),
    Case("card", {"X-Mock-Answer": "card"}, {"pii_leak": 1.0}),
    Case("not_luhn", {"X-Mock-Answer": "not_luhn"}, {"pii_leak": 0.0}),
    Case("email", {"X-Mock-Answer": "email"}, {"pii_leak": 1.0}),
    Case("iban", {"X-Mock-Answer": "iban"}, {"pii_leak": 1.0}),
    Case("phone", {"X-Mock-Answer": "phone"}, {"pii_leak": 1.0}),
    Case("api_key", {"X-Mock-Answer": "api_key"}, {"pii_leak": 1.0}),
    Case(
        "json_in_schema",
        {"X-Mock-Answer": "json"},
        {"json_valid": 1.0},
        ask="json_schema",
    ),
    Case(
        "json_off_schema",
        {"X-Mock-Answer": "json_off_schema"},
        {"json_valid": 0.0},
        ask="json_schema",
    ),
    Case(
        "invalid_json",
        {"X-Mock-Answer": "invalid_json"},
        {"json_valid": 0.0},
        ask="json_object",
        apis=frozenset({"chat", "responses"}),
    ),
    Case(
        "tool_in_schema", {"X-Mock-Answer": "json"}, {"json_valid": 1.0, "empty": 0.0}, ask="tool"
    ),
    Case("tool_off_schema", {"X-Mock-Answer": "json_off_schema"}, {"json_valid": 0.0}, ask="tool"),
]


def cases_for(api: str) -> list[Case]:
    return [case for case in CASES if api in case.apis]


def chat_options(case: Case) -> dict[str, Any]:
    """The chat completions request's options (and headers) for ``case``."""
    options: dict[str, Any] = {"extra_headers": dict(case.headers)}
    if case.ask == "cut":
        options["max_tokens"] = 3
    elif case.ask == "json_object":
        options["response_format"] = {"type": "json_object"}
    elif case.ask == "json_schema":
        options["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": SCHEMA},
        }
    elif case.ask == "tool":
        options["tools"] = [{"type": "function", "function": {"name": TOOL, "parameters": SCHEMA}}]
        options["extra_headers"]["X-Mock-Tool-Call"] = TOOL
    return options


def messages_options(case: Case) -> dict[str, Any]:
    """Anthropic's Messages request's options for ``case``."""
    options: dict[str, Any] = {"extra_headers": dict(case.headers), "max_tokens": 1000}
    if case.ask == "cut":
        options["max_tokens"] = 3
    elif case.ask == "json_schema":  # structured outputs
        options["output_config"] = {"format": {"type": "json_schema", "schema": SCHEMA}}
    elif case.ask == "tool":
        options["tools"] = [{"name": TOOL, "description": "a city", "input_schema": SCHEMA}]
        options["extra_headers"]["X-Mock-Tool-Call"] = TOOL
    return options


def responses_options(case: Case) -> dict[str, Any]:
    """The Responses API request's options for ``case``."""
    options: dict[str, Any] = {"extra_headers": dict(case.headers)}
    if case.ask == "cut":
        options["max_output_tokens"] = 16  # the API's floor; the mock draws at least 20
    elif case.ask == "json_object":
        options["text"] = {"format": {"type": "json_object"}}
    elif case.ask == "json_schema":
        options["text"] = {"format": {"type": "json_schema", "name": "city", "schema": SCHEMA}}
    elif case.ask == "tool":
        options["tools"] = [{"type": "function", "name": TOOL, "parameters": SCHEMA}]
        options["extra_headers"]["X-Mock-Tool-Call"] = TOOL
    return options


def check(case: Case, scores: dict[str, float]) -> None:
    """The evaluator scores of one call against the case's expectations."""
    for name, value in case.expected.items():
        assert scores.get(name) == value, (case.id, name, scores)
    if case.ask in ("plain", "cut"):
        assert "json_valid" not in scores, (case.id, scores)
