"""Personal data and secrets in a text: email addresses, phone numbers, payment cards, IBANs.

`find_pii` is what the ``pii_leak`` evaluator and content capture's redaction both run, so what
one reports the other masks.

>>> [f.kind for f in find_pii("Write to jane.doe@acme.io or call +44 20 7946 0958.")]
['email', 'phone']
>>> find_pii("Released 2024-03-15, version 1.2.3.4, order 4815162342.")
[]
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from aivitals.detectors.finding import Finding, Kind
from aivitals.detectors.secrets import find_secrets

if TYPE_CHECKING:
    from types import ModuleType

# Hand-written: the maintained email libraries validate one given address, none finds them in
# running text. The top-level domain has letters only, so "user@host" and "a@b.c1" are not.
_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|\.[A-Za-z0-9]|:\w)"
)
# RFC 2606 and 6761 names are placeholders, never anyone's address.
_RESERVED_DOMAIN = re.compile(
    r"(?:^|\.)(?:example\.(?:com|net|org)|[^.]+\.(?:example|test|invalid|localhost))$", re.I
)
# 13 to 19 digits, optionally grouped by one kind of separator (spaces or dashes).
_CARD = re.compile(r"(?<![\d.,/-])\d(?:[ -]?\d){12,18}(?![\d.,/]\d|[\d-])")
# The issuers' ranges (ISO/IEC 7812 IINs): a Luhn-valid number outside them is some other id.
_CARD_PREFIX = re.compile(
    r"^(?:4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3(?:0[0-5]|[68])|6(?:011|4[4-9]|5|2)|35"
    r"|50|5[6-9]|6[0-9])"
)
# Two letters, two check digits, then up to 30 letters and digits, perhaps grouped by spaces.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])", re.I)
# A stretch that may hold phone numbers: digits among the separators they are written with. Only
# these (with a few characters of context) go to the phone matcher, the slowest detector.
_PHONE_STRETCH = re.compile(r"(?:\+|\(\+?)?\d[\d ().\-/\u00a0]*\d\)?")
_STRETCH_CONTEXT = 3
_PHONE_DIGITS = 7  # no country's number is shorter (`find_phones`)
_CARD_DIGITS = 13  # the shortest card number `_CARD` takes
_IBAN_DIGITS = 2  # its check digits (`_IBAN`)
_DIGIT = re.compile(r"\d")
_BLANK = "\u2588"  # what a finding is blanked with before the next finder: no digit, no letter
_MAX_DIGITS = 17  # E.164's 15, and an international prefix such as 00
# Dates and dotted versions, whole: never a phone number, and common; the matcher need not look.
_DATE_OR_VERSION = re.compile(r"\d{4}-\d\d-\d\d|\d\d?[./-]\d\d?[./-]\d{2,4}|\d+(?:\.\d+){2,}")
# An unformatted run of digits is a phone number only when the text says so just before it.
_PHONE_CUE = re.compile(
    r"\b(?:phone|tel|call|mobile|cell|fax|whatsapp|sms|text me|reach me|t[ée]l[ée]phone|portable"
    r"|appel|joindre|num[ée]ro|telefon|handy|ruf|anrufen|tel[ée]fono|m[óo]vil|llam|celular)"
    r"\W{0,5}(?:\w+\W{1,3}){0,3}$",
    re.I,
)
PHONE_REGIONS = ("US", "GB", "FR", "DE", "ES")
"""The countries whose national formats (without +country code) are recognised; international
forms (+33 ..., 0049 ...) are recognised for every country."""


def find_pii(text: str) -> list[Finding]:
    """Every email, phone number, payment card, IBAN and secret in ``text``, in order.

    Where two overlap the more specific wins (a secret, an IBAN, a card, an email, a phone).
    """
    return _found(text, _finders(text))


def _finders(text: str) -> tuple[Callable[[str], list[Finding]], ...]:
    """The finders that can find anything in ``text``, in `find_pii`'s order.

    Each of them scans the whole text with a regular expression, 30 to 40 µs for 1,000
    characters; a card needs 13 digits, a phone number 7 and an IBAN 2, which a count of the
    digits rules out for most prose at a fraction of that. Blanking a finding never adds a
    digit, so the count of the text as given holds for every finder.
    """
    digits = _digits(text)
    return (
        find_secrets,
        *((find_ibans,) if digits >= _IBAN_DIGITS else ()),
        *((find_cards,) if digits >= _CARD_DIGITS else ()),
        find_emails,
        *((find_phones,) if digits >= _PHONE_DIGITS else ()),
    )


def _digits(text: str) -> int:
    """How many characters of ``text`` the finders' ``\\d`` matches (any Unicode decimal digit)."""
    if text.isascii():
        return sum(map(text.count, "0123456789"))  # ten scans in C: faster than any regex
    return len(_DIGIT.findall(text))


def _found(text: str, finders: Iterable[Callable[[str], list[Finding]]]) -> list[Finding]:
    found: list[Finding] = []
    for finder in finders:
        fresh = finder(text)
        found.extend(fresh)
        if fresh:
            # What is found is blanked (same length, so offsets hold) before the next finder
            # reads the text: a phone number right after an IBAN is read on its own, as it will
            # be once the IBAN is masked.
            text = _blanked(text, fresh)
    found.sort(key=lambda f: f.start)
    return found


def _blanked(text: str, findings: Iterable[Finding]) -> str:
    chars = list(text)
    for f in findings:
        chars[f.start : f.end] = _BLANK * (f.end - f.start)
    return "".join(chars)


def find_emails(text: str) -> list[Finding]:
    """Email addresses, except at the reserved example domains."""
    if "@" not in text:
        return []
    return [
        Finding("email", m.start(), m.end())
        for m in _EMAIL.finditer(text)
        if not _RESERVED_DOMAIN.search(m.group().rpartition("@")[2])
    ]


def find_cards(text: str) -> list[Finding]:
    """Payment card numbers: 13 to 19 digits, one kind of grouping, an issuer's prefix, Luhn."""
    found = []
    for m in _CARD.finditer(text):
        raw = m.group()
        if " " in raw and "-" in raw:
            continue
        digits = re.sub(r"\D", "", raw)
        if _CARD_PREFIX.match(digits) and _stdnum().luhn.is_valid(digits):
            found.append(Finding("card", m.start(), m.end()))
    return found


def find_ibans(text: str) -> list[Finding]:
    """IBANs whose length fits their country and whose mod-97 check holds (python-stdnum)."""
    found = []
    position = 0
    while (m := _IBAN.search(text, position)) is not None:
        raw = m.group()
        # The pattern may run on into the next word ("... 3000 AND") or the next IBAN: take the
        # longest valid one, and look for the next after it.
        position = m.start() + 1
        for end in range(len(raw), 14, -1):
            candidate = raw[:end]
            if not candidate.endswith(" ") and _stdnum().iban.is_valid(candidate):
                found.append(Finding("iban", m.start(), m.start() + end))
                position = m.start() + end
                break
    return found


def find_phones(text: str, regions: Iterable[str] = PHONE_REGIONS) -> list[Finding]:
    """Phone numbers, international and in the national formats of ``regions``.

    Google's libphonenumber (its Python port, `phonenumbers`) decides what is a valid number of
    which country, and groups the digits strictly as that country writes them, so dates,
    versions, order numbers and prices are not numbers. An unformatted run of digits counts only
    after a word such as "phone", "tel.", "appelez", "Handy" or "móvil".
    """
    found: list[Finding] = []
    for stretch in _PHONE_STRETCH.finditer(text):
        raw = stretch.group()
        if sum(c.isdigit() for c in raw) < _PHONE_DIGITS or _DATE_OR_VERSION.fullmatch(raw):
            continue  # no country's number is shorter
        offset = max(0, stretch.start() - _STRETCH_CONTEXT)
        window = text[offset : stretch.end() + _STRETCH_CONTEXT]
        # "ZZ" (no country) reads only the international form, which starts with +.
        tried = ("ZZ", *regions) if "+" in raw else tuple(regions)
        found.extend(_phones_in(text, window, offset, raw, tried))
    return found


def _phones_in(
    text: str, window: str, offset: int, raw: str, regions: Iterable[str]
) -> list[Finding]:
    phonenumbers = _phonenumbers()
    # The matcher costs 0.1 to 0.5 ms a country; a number's validity 30 us. So the matcher runs
    # only for the countries where the stretch is a valid number at all (a long stretch may hold
    # two numbers: then for every country), and stops at the first that finds one.
    if sum(c.isdigit() for c in raw) <= _MAX_DIGITS:
        regions = [region for region in regions if _valid_in(phonenumbers, raw, region)]
    for region in regions:
        found: list[Finding] = []
        for match in phonenumbers.PhoneNumberMatcher(
            window, region, leniency=phonenumbers.Leniency.STRICT_GROUPING
        ):
            start, end = offset + match.start, offset + match.end
            bare = not re.search(r"[\s().\-/+]", match.raw_string)
            if bare and not _PHONE_CUE.search(text[max(0, start - 40) : start]):
                continue
            found.append(Finding("phone", start, end))
        if found:
            return found
    return []


def _valid_in(phonenumbers: ModuleType, raw: str, region: str) -> bool:
    try:
        number = phonenumbers.parse(raw, None if region == "ZZ" else region)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))


class _Stdnum:
    def __init__(self) -> None:
        # Imported on first use, on the quality worker: 10 ms that `import aivitals` should not
        # pay.
        from stdnum import iban, luhn  # noqa: PLC0415

        self.iban = iban
        self.luhn = luhn


@functools.cache
def _stdnum() -> _Stdnum:
    return _Stdnum()


@functools.cache
def _phonenumbers() -> ModuleType:
    # Imported on first use, on the quality worker: 25 ms that the application's import of
    # aivitals should not pay.
    import phonenumbers  # noqa: PLC0415

    return phonenumbers


def kinds(findings: Iterable[Finding]) -> set[Kind]:
    """The kinds among ``findings``."""
    return {f.kind for f in findings}
