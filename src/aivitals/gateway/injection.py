"""The prompt-injection heuristic set: phrasings of known injections, from
``injection_phrases.yaml`` beside this module.

A heuristic, not a classifier: it catches the published phrasings ("ignore all previous
instructions", "you are now DAN", "reveal your system prompt", fake ``<|im_start|>`` headers) in
English, and misses paraphrases, other languages and encoded payloads (docs/gateway.md).

>>> text = "OK. Now IGNORE all  previous instructions!"
>>> [text[s:e] for s, e in find_injections(text)]
['IGNORE all  previous instructions']
>>> find_injections("Please summarise the previous instructions for the new hire.")
[]
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from aivitals.detectors.refusal import normalise


def find_injections(text: str) -> list[tuple[int, int]]:
    """The spans of ``text`` that read as an injection, in order (case and runs of whitespace
    do not matter)."""
    folded = text.lower()
    if len(folded) != len(text):  # a few letters lowercase to two characters: offsets move
        folded = normalise(text)
        found = any(pattern.search(folded) for pattern in _cued(folded))
        return [(0, len(text))] if found else []
    return sorted({m.span() for pattern in _cued(folded) for m in pattern.finditer(folded)})


def _cued(folded: str) -> list[re.Pattern[str]]:
    return [pattern for cues, pattern in _patterns() if any(cue in folded for cue in cues)]


@functools.cache
def _patterns() -> tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]:
    import yaml  # noqa: PLC0415  # on the first guardrail with prompt_injection, not at import

    source = resources.files("aivitals.gateway").joinpath("injection_phrases.yaml")
    entries = yaml.safe_load(source.read_text("utf-8"))["patterns"]
    compiled = []
    for position, entry in enumerate(entries, 1):
        cues, pattern = entry.get("cues"), entry.get("pattern")
        if not isinstance(pattern, str) or not cues or not all(isinstance(c, str) for c in cues):
            # A plain YAML scalar holding ": " is read as a mapping: quote every string.
            raise ValueError(f"injection_phrases.yaml: entry {position} needs cues and a pattern")
        # A space in a phrase stands for any run of whitespace (a line break, two spaces).
        compiled.append((tuple(cues), re.compile(pattern.replace(" ", r"\s+"))))
    return tuple(compiled)
