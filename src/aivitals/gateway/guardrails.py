"""The gateway's guardrails: what each detects in a text, and what a set of them decides.

A `Guardrail` is one ``[[guardrails]]`` entry compiled (`GuardrailSettings`); `Guardrails` holds
them all and answers, for one route and model, which apply on each side. `check` runs the ones
that apply over a list of texts (`body_text.Slot`) and says what they decided (`Verdict`): a
block (the first blocking guardrail that matched, and where), or the redactions it made in place
and the guardrails that acted. Every guardrail reads the texts as they came, so the order of the
entries does not matter; a block wins over everything else.

>>> from aivitals.gateway.guardrail_settings import GuardrailSettings
>>> cards = Guardrail(GuardrailSettings(name="cards", on="input", detectors=["card"],
...                                     action="redact"))
>>> body = {"messages": [{"role": "user", "content": "pay with 4111 1111 1111 1111"}]}
>>> verdict = check([cards], request_slots("chat", body))
>>> body["messages"][0]["content"], verdict.tag
('pay with [card]', 'cards:redact')
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

from aivitals.bounds import MAX_TAG_VALUE_CHARS
from aivitals.detectors.finding import KINDS, Finding, Kind
from aivitals.detectors.pii import find_cards, find_emails, find_ibans, find_phones, find_pii
from aivitals.detectors.redact import EXTRA, redact
from aivitals.detectors.secrets import find_secrets
from aivitals.gateway.body_text import Slot, joined, request_slots
from aivitals.gateway.guardrail_settings import (
    Action,
    GuardrailSettings,
    Side,
    schema_validator,
)
from aivitals.gateway.injection import find_injections

__all__ = ["Guardrail", "Guardrails", "Verdict", "check", "request_slots"]

_FINDERS: tuple[tuple[Kind, Callable[[str], list[Finding]]], ...] = (
    ("secret", find_secrets),
    ("iban", find_ibans),
    ("card", find_cards),
    ("email", find_emails),
    ("phone", find_phones),
)
_DIGIT_OR_AT = re.compile(r"[\d@]")

TAG = "guardrail"
"""The call tag naming the guardrails that acted: ``name:action``, sorted, comma-joined."""

_WHAT = {
    "email": "an email address",
    "phone": "a phone number",
    "card": "a payment card number",
    "iban": "an IBAN",
    "secret": "a secret",
    "pattern": "a match of its patterns",
    "deny": "a denied phrase",
    "injection": "a prompt injection",
    "json_schema": "JSON that does not fit its schema",
}


def describe(kind: str | None) -> str:
    """What a guardrail found, in words, for a block's message (never the text it found)."""
    return _WHAT.get(kind or "", "a match")


class Guardrail:
    """One guardrail, its patterns compiled once (at start-up, not per request)."""

    __slots__ = (
        "action",
        "deny",
        "injection",
        "kinds",
        "models",
        "name",
        "needs_scan",
        "patterns",
        "routes",
        "schema",
        "side",
        "validator",
    )

    def __init__(self, settings: GuardrailSettings) -> None:
        self.name = settings.name
        self.side: Side = settings.on
        self.action: Action = settings.action
        self.kinds = frozenset(settings.detectors)
        # Cards, IBANs and phone numbers hold digits, emails an @: a text with neither (most
        # prose, most stream windows) needs no scan unless secrets (letters only) are asked for.
        self.needs_scan = "secret" in self.kinds
        self.patterns = tuple(re.compile(p) for p in settings.patterns)
        # One alternation for the phrases: whole words, any case, any run of spaces between.
        self.deny = (
            re.compile(
                r"(?<!\w)(?:"
                + "|".join(r"\s+".join(map(re.escape, p.split())) for p in settings.deny)
                + r")(?!\w)",
                re.IGNORECASE,
            )
            if settings.deny
            else None
        )
        self.injection = settings.prompt_injection
        self.schema = settings.json_schema
        self.validator = schema_validator(self.schema) if self.schema is not None else None
        self.routes = frozenset(settings.routes)
        self.models = frozenset(settings.models)

    def applies(self, route: str, model: str) -> bool:
        return (not self.routes or route in self.routes) and (
            not self.models or model in self.models
        )

    def matches(self, text: str) -> tuple[list[Finding], list[tuple[int, int]], str | None]:
        """What it finds in ``text``: the detectors' findings, the other spans (patterns, deny,
        injection), and the name of the first kind found (for a block's message)."""
        findings: list[Finding] = []
        spans: list[tuple[int, int]] = []
        first: str | None = None
        if self.kinds and (self.needs_scan or _DIGIT_OR_AT.search(text)):
            findings = self._find(text)
            if findings:
                first = findings[0].kind
        for kind, candidates in (
            ("pattern", [m.span() for p in self.patterns for m in p.finditer(text)]),
            ("deny", [m.span() for m in self.deny.finditer(text)] if self.deny else []),
            ("injection", find_injections(text) if self.injection else []),
        ):
            found = [(start, end) for start, end in candidates if end > start]
            if found:
                spans.extend(found)
                first = first or kind
        return findings, spans, first

    def _find(self, text: str) -> list[Finding]:
        if len(self.kinds) == len(KINDS):
            return find_pii(text)
        # Only the finders asked for (the phone matcher is by far the slowest), in find_pii's
        # order of precedence: a finding overlapping one of an earlier kind is dropped.
        found: list[Finding] = []
        for kind, finder in _FINDERS:
            if kind in self.kinds:
                found.extend(
                    f
                    for f in finder(text)
                    if not any(f.start < g.end and g.start < f.end for g in found)
                )
        found.sort(key=lambda f: f.start)
        return found

    def misfits(self, text: str) -> bool:
        """Whether ``text`` fails this guardrail's JSON schema (not JSON, or not fitting)."""
        if self.schema is None:
            return False
        try:
            value = json.loads(text)
        except ValueError:
            return True
        return self.validator is not None and not self.validator.is_valid(value)


@dataclass(slots=True)
class Verdict:
    """What the guardrails decided about one side of one request."""

    acted: dict[str, str] = field(default_factory=dict)
    """Guardrail name to action, for those that found something."""
    blocked: Guardrail | None = None
    param: str | None = None
    """Where the block's match is (``messages[0].content``), as OpenAI's errors name a field."""
    what: str = ""
    """What the blocking guardrail found, in words."""

    @property
    def tag(self) -> str:
        return tag_value(self.acted.items())

    def message(self, side: Side) -> str:
        assert self.blocked is not None
        where = "request" if side == "input" else "answer"
        return f"guardrail {self.blocked.name!r} blocked the {where}: it holds {self.what}" + (
            f" (in {self.param})" if self.param else ""
        )


def tag_value(acted: Iterable[tuple[str, str]]) -> str:
    """``name:action`` pairs sorted by name, comma-joined, cut to a tag's length."""
    return ",".join(f"{name}:{action}" for name, action in sorted(acted))[:MAX_TAG_VALUE_CHARS]


def check(guardrails: Sequence[Guardrail], slots: Sequence[Slot]) -> Verdict:
    """Run ``guardrails`` over the texts in ``slots``, redacting in place unless one blocks."""
    verdict = Verdict()
    masks: dict[int, tuple[list[Finding], list[tuple[int, int]]]] = {}
    for guardrail in guardrails:
        if guardrail.schema is not None:
            if guardrail.misfits(joined(slots)):
                _acted(verdict, guardrail, "json_schema", None)
            continue
        for index, slot in enumerate(slots):
            findings, spans, first = guardrail.matches(slot.text)
            if first is None:
                continue
            _acted(verdict, guardrail, first, slot.param)
            if guardrail.action == "redact":
                mine = masks.setdefault(index, ([], []))
                mine[0].extend(findings)
                mine[1].extend(spans)
    if verdict.blocked is not None:
        return verdict
    for index, (findings, spans) in masks.items():
        slots[index].set(mask(slots[index].text, findings, spans))
    return verdict


def mask(text: str, findings: Sequence[Finding], spans: Sequence[tuple[int, int]]) -> str:
    """``text`` with the detectors' findings as ``[kind]`` and the other spans (patterns, deny,
    injection) as ``[redacted]``, overlaps merged (`aivitals.detectors.redact`)."""
    # redact() labels a finding by its kind: the other spans go in as findings of the kind its
    # own user patterns are masked as, so the overlap merging stays in one place.
    other = cast(Kind, EXTRA)
    return redact(text, [*findings, *(Finding(other, start, end) for start, end in spans)])


def _acted(verdict: Verdict, guardrail: Guardrail, what: str, param: str | None) -> None:
    verdict.acted[guardrail.name] = guardrail.action
    if guardrail.action == "block" and verdict.blocked is None:
        verdict.blocked = guardrail
        verdict.param = param
        verdict.what = describe(what)


class Guardrails:
    """Every configured guardrail, by side; `for_side` filters them for one request."""

    def __init__(self, guardrails: Iterable[Guardrail]) -> None:
        self.all = tuple(guardrails)
        self.input = tuple(g for g in self.all if g.side == "input")
        self.output = tuple(g for g in self.all if g.side == "output")

    def for_side(self, side: Side, route: str, model: str) -> tuple[Guardrail, ...]:
        """The guardrails of ``side`` that apply to ``route`` and ``model``."""
        on = self.input if side == "input" else self.output
        return tuple(g for g in on if g.applies(route, model))

    def __bool__(self) -> bool:
        return bool(self.all)


def build_guardrails(settings: Iterable[GuardrailSettings]) -> Guardrails | None:
    """The compiled guardrails, or None when the config has none (the proxy then skips them)."""
    compiled = [Guardrail(s) for s in settings]
    return Guardrails(compiled) if compiled else None
