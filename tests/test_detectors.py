"""The detectors: personal data, secrets, refusals and redaction (`aivitals.detectors`).

Each kind with its lookalikes: dates, versions and order numbers are no phone numbers, a number
failing Luhn is no card, an IBAN with a wrong check digit is no IBAN, a placeholder is no key,
and an answer that only opens like a refusal is none.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aivitals.detectors import find_pii, is_refusal, pii, redact
from aivitals.detectors.pii import find_cards, find_emails, find_ibans, find_phones
from aivitals.detectors.refusal import (
    _APOSTROPHES,
    _LEADING,
    _collapsed,
    normalise,
    refusal_language,
)
from aivitals.detectors.secrets import find_secrets


def found(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Write to jane.doe@acme.io today.", "jane.doe@acme.io"),
        ("Contact: <MARIE-CLAIRE+billing@univ-lyon1.fr>", "MARIE-CLAIRE+billing@univ-lyon1.fr"),
        ("mail: p.muller@firma.co.uk.", "p.muller@firma.co.uk"),
    ],
)
def test_emails_are_found(text: str, address: str) -> None:
    assert found(text) == [("email", address)]


@pytest.mark.parametrize(
    "text",
    [
        "Use user@example.com as a placeholder.",  # RFC 2606: nobody's address
        "Reach admin@localhost on the box.",  # no top-level domain
        "Clone git@github.com:acme/repo.git first.",  # an SSH remote, not a mailbox
        "Follow @acme on social media.",
        "Decorate with @app.route('/x').",
    ],
)
def test_email_lookalikes_are_not_found(text: str) -> None:
    assert find_emails(text) == []


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Call me at +1 415-555-0132 tomorrow.", "+1 415-555-0132"),
        ("Phone: (415) 555-0132", "(415) 555-0132"),
        ("Our London office: +44 20 7946 0958.", "+44 20 7946 0958"),
        ("UK: 020 7946 0958", "020 7946 0958"),
        ("Appelez le 01 42 68 53 00 avant midi.", "01 42 68 53 00"),
        ("Mon portable : 06 12 34 56 78", "06 12 34 56 78"),
        ("Ruf mich an: 030 12345678", "030 12345678"),
        ("Mein Handy: 0151 23456789", "0151 23456789"),
        ("Llámame al 612 34 56 78.", "612 34 56 78"),
        ("móvil: +34 612 345 678", "+34 612 345 678"),
        ("From abroad dial 0049 30 12345678.", "0049 30 12345678"),
        ("tel: 0612345678", "0612345678"),  # unformatted, but said to be a phone
    ],
)
def test_phone_numbers_are_found_in_international_and_national_forms(
    text: str, number: str
) -> None:
    assert found(text) == [("phone", number)]


@pytest.mark.parametrize(
    "text",
    [
        "Released on 2024-03-15 at 10:30.",
        "Due 15/03/2024, paid 03.15.2024.",
        "Upgrade to version 1.2.3.4 or 10.0.19045.",
        "Your order 4815162342 has shipped.",
        "Order number 0612345678 is on its way.",  # digits of a phone, but an order number
        "Invoice 2024-0042-17 is attached.",
        "ISBN 978-3-16-148410-0",
        "IP 192.168.1.1, port 8080.",
        "Total: $1,234,567.89 for 10,000 users in 2023.",
        "timestamp 1700000000000",
        "pi is 3.14159265358979",
        "Between 2019-2023 sales grew 415 555 units.",
    ],
)
def test_dates_versions_and_order_numbers_are_not_phone_numbers(text: str) -> None:
    assert find_phones(text) == []
    assert find_pii(text) == []


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("Visa 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111"),
        ("card=5555555555554444;", "5555555555554444"),
        ("Amex 3782 822463 10005.", "3782 822463 10005"),
        ("Card: 4012-8888-8888-1881", "4012-8888-8888-1881"),
        ("Visa 13 digits: 4222222222222", "4222222222222"),
    ],
)
def test_card_numbers_that_pass_luhn_are_found(text: str, number: str) -> None:
    assert found(text) == [("card", number)]


@pytest.mark.parametrize(
    "text",
    [
        "Card 4111 1111 1111 1112 was declined.",  # fails Luhn
        "Tracking 9400 1000 0000 0000 0000 00",  # 22 digits: too long for a card
        "Mixed 4111 1111-1111 1111 grouping",  # one separator kind or none
        "Number 1234 5678 9012 3452",  # passes Luhn, but no issuer starts with 1
        "Account 0000 0000 0000 0000",
    ],
)
def test_numbers_that_are_not_cards_are_not_found(text: str) -> None:
    assert find_cards(text) == []


@pytest.mark.parametrize(
    ("text", "iban"),
    [
        ("IBAN DE89 3704 0044 0532 0130 00 AND more", "DE89 3704 0044 0532 0130 00"),
        ("iban: FR14 2004 1010 0505 0001 3M02 606.", "FR14 2004 1010 0505 0001 3M02 606"),
        ("Pay to GB82WEST12345698765432 please", "GB82WEST12345698765432"),
        ("ES91 2100 0418 4502 0005 1332", "ES91 2100 0418 4502 0005 1332"),
    ],
)
def test_ibans_with_their_country_length_and_mod_97_are_found(text: str, iban: str) -> None:
    assert found(text) == [("iban", iban)]


@pytest.mark.parametrize(
    "text",
    [
        "DE89 3704 0044 0532 0130 01",  # wrong check: mod 97 fails
        "DE89 3704 0044 0532 0130",  # too short for Germany
        "XX12 3456 7890 1234 5678 90",  # no such country
    ],
)
def test_iban_lookalikes_are_not_found(text: str) -> None:
    assert find_ibans(text) == []


@pytest.mark.parametrize(
    ("token", "issuer"),
    [
        ("sk-proj-4fG7hK2mN9pQ1rS8tV3wX6yZ0aB5cD", "openai"),
        ("sk-4fG7hK2mN9pQ1rS8tV3wX6yZ0aB5cDeF7gH", "openai"),
        ("sk-ant-api03-abcDEF123456ghiJKL789012mnoPQR345678", "anthropic"),
        ("AKIAIOSFODNN7EXAMPLE", "aws"),
        ("ghp_1234567890abcdefghijABCDEFGHIJ123456", "github"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123", "github"),
        ("AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "google"),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe"),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "jwt",
        ),
    ],
)
def test_provider_keys_are_secrets_with_their_issuer(token: str, issuer: str) -> None:
    text = f"Here it is: {token} (keep it safe)"
    findings = find_secrets(text)
    assert [(f.kind, f.detail, text[f.start : f.end]) for f in findings] == [
        ("secret", issuer, token)
    ]


def test_a_private_key_block_is_one_secret_even_when_the_answer_was_cut_inside_it() -> None:
    whole = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----"
    assert found(f"key:\n{whole}\nthat is all") == [("secret", whole)]
    cut = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"
    assert found(f"key:\n{cut}") == [("secret", cut)]


@pytest.mark.parametrize(
    "text",
    [
        "export OPENAI_API_KEY=sk-your-key-here",
        "export OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "aws_access_key_id = AKIAXXXXXXXXXXXXXXXX",
        "The skeleton sk-learn-style pipeline",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        "Task ask-questions-first-and-then-answer-them-all",
    ],
)
def test_placeholders_and_public_keys_are_not_secrets(text: str) -> None:
    assert find_secrets(text) == []


def test_findings_are_in_order_and_never_overlap() -> None:
    text = "Mail a.b@acme.io, IBAN DE89370400440532013000, call +33 6 12 34 56 78, 4111111111111111"
    kinds = [kind for kind, _ in found(text)]
    assert kinds == ["email", "iban", "phone", "card"]
    spans = [(f.start, f.end) for f in find_pii(text)]
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def test_redact_masks_each_finding_by_kind_and_the_users_patterns() -> None:
    text = (
        "Jane (jane@acme.io, +44 20 7946 0958) paid with 4111 1111 1111 1111 from "
        "DE89 3704 0044 0532 0130 00 using key sk-proj-4fG7hK2mN9pQ1rS8tV3wX6yZ0aB5cD; EMP-00417."
    )
    masked = redact(text, find_pii(text), extra_patterns=[re.compile(r"EMP-\d+"), "Jane"])
    assert masked == (
        "[redacted] ([email], [phone]) paid with [card] from [iban] using key [secret]; [redacted]."
    )


def test_redact_merges_overlapping_spans_and_leaves_clean_text_alone() -> None:
    text = "call +44 20 7946 0958 now"
    assert redact(text, find_pii(text), extra_patterns=[r"7946 0958 now"]) == "call [phone]"
    assert redact("nothing here", []) == "nothing here"


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("I'm sorry, but I can't help with that request.", "en"),
        ("I can\u2019t help with that.", "en"),  # a curly apostrophe
        ("I CANNOT ASSIST WITH CREATING MALWARE.", "en"),
        ("I won't be able to help you with that.", "en"),
        ("I must respectfully decline.", "en"),
        ("As an AI, I cannot provide medical diagnoses.", "en"),
        ("I'm not able to provide that information.", "en"),
        ("**Sorry, I can't do that.**", "en"),
        ("Je suis désolé, mais je ne peux pas vous aider avec cela.", "fr"),
        ("Je ne peux pas repondre a cette demande.", "fr"),  # written without accents
        ("Il m\u2019est impossible de fournir ces informations.", "fr"),
        ("Es tut mir leid, aber ich kann Ihnen dabei nicht helfen.", "de"),
        ("Ich kann diese Anfrage nicht erfüllen.", "de"),
        ("Leider kann ich dir hierbei nicht helfen.", "de"),
        ("Lo siento, pero no puedo ayudarte con eso.", "es"),
        ("No puedo proporcionar esa informacion.", "es"),
        ("Me temo que no puedo hacer eso.", "es"),
    ],
)
def test_refusals_in_four_languages(text: str, language: str) -> None:
    assert refusal_language(text) == language


@pytest.mark.parametrize(
    "text",
    [
        "I can't believe how easy this is: just call sorted().",
        "I can't wait to help you build this!",
        "I can't help but notice the bug on line 3.",
        "I can't stress enough how important backups are.",
        "Sorry for the confusion! Here is the corrected query.",
        "I cannot recommend this library enough.",
        "I'm not sure, but I think the answer is 42.",
        "Sure! I'd be happy to help with that.",
        "Je ne peux pas croire que c'est si simple : voici le code.",
        "Ich kann es kaum erwarten, loszulegen!",
        "Ich kann nicht genug betonen, wie wichtig Tests sind.",
        "No puedo creer lo fácil que es.",
        "No puedo dejar de recomendar este libro.",
        "",
    ],
)
def test_answers_that_only_open_like_a_refusal_are_not_refusals(text: str) -> None:
    assert not is_refusal(text)


def test_a_refusal_phrase_far_into_the_answer_is_not_a_refusal() -> None:
    opening = "Here is the support macro you asked for, ready to paste into the help desk. " * 4
    assert not is_refusal(opening + "It ends: 'I'm sorry, but I can't help with that.'")
    assert is_refusal("I'm sorry, but I can't help with that. " + opening)


def test_normalise_lowercases_strips_accents_and_straightens_apostrophes() -> None:
    assert normalise("  > Désolé,\u00a0JE NE PEUX\u2019 PAS") == "desole, je ne peux' pas"


def luhn_completed(body: str) -> str:
    """``body`` with the check digit that makes it pass Luhn (written out: not stdnum's)."""
    total = 0
    for i, digit in enumerate(reversed(body)):
        value = int(digit) * (2 if i % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return body + str((10 - total % 10) % 10)


@given(body=st.text(alphabet="0123456789", min_size=14, max_size=14), grouped=st.booleans())
def test_any_visa_number_that_passes_luhn_is_a_card_and_one_digit_off_is_not(
    body: str, grouped: bool
) -> None:
    number = luhn_completed("4" + body)
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    for digits, is_card in ((number, True), (wrong, False)):
        shown = " ".join(digits[i : i + 4] for i in range(0, 16, 4)) if grouped else digits
        text = f"Paid with {shown} yesterday."
        assert bool(find_cards(text)) is is_card, shown


FRAGMENTS = st.sampled_from(
    [
        "jane.doe@acme.io",
        "4111 1111 1111 1111",
        "+44 20 7946 0958",
        "01 42 68 53 00",
        "DE89 3704 0044 0532 0130 00",
        "sk-proj-4fG7hK2mN9pQ1rS8tV3wX6yZ0aB5cD",
        "AKIAIOSFODNN7EXAMPLE",
        "2024-03-15",
        "tel: ",
        " ",
        "-",
        "+",
        "@",
        ".",
        "0",
        "7",
    ]
)


@given(text=st.lists(FRAGMENTS | st.text(max_size=12), max_size=12).map(" ".join))
@settings(max_examples=300, deadline=None)
def test_findings_on_any_text_are_ordered_apart_and_redaction_leaves_none(text: str) -> None:
    findings = find_pii(text)
    assert all(0 <= f.start < f.end <= len(text) for f in findings)
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))
    masked = redact(text, findings)
    assert find_pii(masked) == []
    assert isinstance(is_refusal(text), bool)


# Pieces that make findings (or nearly) when put together: digits of several scripts, grouping
# separators, an IBAN's and a card's digits, phone cues, an address.
_PIECES = [
    "4111 1111 1111 1111",
    "4111-1111-1111-111",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "+44 20 7946 0958",
    "(415) 555-0132",
    "call 4155550132",
    "06 12 34 56 78",
    "jane.doe@acme.io",
    "sk-proj-4fG7hK2mN9pQ1rS8tV3wX6yZ0aB5cD",
    "٣٤٥٦٧٨٩",
    "१२३४५६७८९०१२३",
    "Order 2 of 3",
    "2024-03-15",
    " ",
    "\n",
    ".",
    "-",
    "x",
    "7",
    "€",
]


@given(st.lists(st.sampled_from(_PIECES), max_size=12), st.text(max_size=8))
def test_find_pii_finds_what_every_finder_run_on_the_text_finds(
    pieces: list[str], extra: str
) -> None:
    text = "".join(pieces) + extra
    every = (find_secrets, find_ibans, find_cards, find_emails, find_phones)
    assert pii.find_pii(text) == pii._found(text, every)


def test_prose_with_few_digits_skips_the_card_and_phone_finders() -> None:
    prose = "Your order ships in 2 days, 3 at most. " + "It is on its way to you. " * 40
    assert pii._finders(prose) == (find_secrets, find_ibans, find_emails)
    assert pii._finders("no digits at all") == (find_secrets, find_emails)
    assert pii._finders("order 1234567") == (find_secrets, find_ibans, find_emails, find_phones)
    # Digits of another script count as the finders' \d counts them.
    assert find_phones in pii._finders("tel ٠٦١٢٣٤٥٦٧٨")
    assert [f.kind for f in find_pii("card 4111 1111 1111 1111, phone +44 20 7946 0958")] == [
        "card",
        "phone",
    ]


_WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u00a0\u1680\u2003\u2028\u3000"


@given(st.text(alphabet=st.sampled_from([*_WHITESPACE, "a", "É", "’", "`", "ß", ">", "x"])))
def test_whitespace_collapses_as_the_regular_expression_collapsed_it(text: str) -> None:
    assert _collapsed(text) == re.sub(r"\s+", " ", text)
    # And the whole normalisation, as it was written with the expression.
    lowered = text.translate(_APOSTROPHES).lower()
    if not lowered.isascii():
        decomposed = unicodedata.normalize("NFKD", lowered)
        lowered = "".join(c for c in decomposed if not unicodedata.combining(c))
    assert normalise(text) == _LEADING.sub("", re.sub(r"\s+", " ", lowered))
