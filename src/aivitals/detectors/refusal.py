"""Whether an answer is a refusal, from a maintained phrase list (English, French, German, Spanish).

The phrases live in ``refusal_phrases.yaml`` beside this module, by language. They are searched
only near the start of the answer (its first 200 characters), where a model declines, so an answer
that quotes a refusal further on, or only opens like one, is not a refusal. The text is compared
lowercased, without accents and with straight apostrophes, so "I can’t", "I CAN'T" and "Je ne
peux pas repondre" match as "I can't" and "Je ne peux pas répondre" do.

>>> is_refusal("I'm sorry, but I can't help with that request.")
True
>>> is_refusal("Lo siento, pero no puedo ayudarte con eso.")
True
>>> is_refusal("I can't believe how easy this is: just call sorted() with key=len.")
False
>>> is_refusal("Sorry for the confusion! Here is the corrected query.")
False
"""

from __future__ import annotations

import functools
import re
import unicodedata
from importlib import resources

WINDOW_CHARS = 200
"""How far into the (normalised) answer a refusal phrase may start."""

LANGUAGES = ("en", "fr", "de", "es")

_LONGEST_PHRASE = 160  # a phrase starting inside the window may end past it

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
# Markdown, quotes and bullets a model may open with before its first word.
_LEADING = re.compile(r"^[\s>*_#\"'\-\u2022\u00ab\u201c]+")


def is_refusal(text: str | None) -> bool:
    """Whether ``text`` opens by declining the request, in any of `LANGUAGES`."""
    return refusal_language(text) is not None


def refusal_language(text: str | None) -> str | None:
    """The language whose phrase ``text`` opens with, or None when it is no refusal."""
    if not text:
        return None
    head = normalise(text[: WINDOW_CHARS * 2])
    window = head[: WINDOW_CHARS + _LONGEST_PHRASE]
    for language, cues, pattern in _patterns():
        # Every phrase of a language holds one of its cue words: most answers hold none, and a
        # substring test is far cheaper than the phrases' alternation.
        if not any(cue in window for cue in cues):
            continue
        match = pattern.search(window)
        if match is not None and match.start() < WINDOW_CHARS:
            return language
    return None


def normalise(text: str) -> str:
    """Lowercased, accents removed, apostrophes straightened, whitespace collapsed."""
    if text.isascii():  # most answers are: no curly apostrophe, no accent to take off
        text = text.replace("`", "'").lower()  # the one ASCII key of `_APOSTROPHES`
    else:
        decomposed = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES).lower())
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _LEADING.sub("", _collapsed(text))


def _collapsed(text: str) -> str:
    """``re.sub(r"\\s+", " ", text)``: each run of whitespace one space.

    By `str.split`, which knows whitespace as the regular expression's ``\\s`` does
    (`str.isspace`), in C: the expression took 4 µs for a short answer and 16 for the window of
    a long one, more than the rest of the detector.
    """
    words = text.split()
    if not words:
        return " " if text else ""
    collapsed = " ".join(words)
    if text[0].isspace():
        collapsed = " " + collapsed
    if text[-1].isspace():
        collapsed += " "
    return collapsed


@functools.cache
def _patterns() -> tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...]:
    import yaml  # noqa: PLC0415  # on the worker, at the first answer: not at `import aivitals`

    source = resources.files("aivitals.detectors").joinpath("refusal_phrases.yaml")
    data = yaml.safe_load(source.read_text("utf-8"))
    compiled = []
    for language in LANGUAGES:
        entry = data[language]
        for name, items in entry.items():
            if not all(isinstance(item, str) for item in items):
                # A plain YAML scalar holding ": " is read as a mapping: quote it, or write \s.
                raise ValueError(f"refusal_phrases.yaml: {language}.{name} has a non-string entry")
        macros = {
            name: "(?:" + "|".join(entry[name]) + ")" for name in ("neg", "verbs") if name in entry
        }
        alternatives = [
            pattern.replace("{neg}", macros.get("neg", "")).replace(
                "{verb}", macros.get("verbs", "")
            )
            for pattern in entry["patterns"]
        ]
        pattern = re.compile("|".join(f"(?:{a})" for a in alternatives))
        cues = tuple(entry["cues"])
        compiled.append((language, cues, pattern))
    return tuple(compiled)
