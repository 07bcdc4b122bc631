"""What an average of word vectors cannot see, checked on the words themselves.

WordLlama averages token vectors: "Is Python a compiled language?" and "Is Python not a compiled
language?" score 0.97, "Convert 10 miles to km" and "Convert 20 miles to km" 0.97, and "Is a
dolphin bigger than a shark?" and "Is a shark bigger than a dolphin?" exactly 1.0. A cached answer
is only replayed when, besides a close embedding, the two questions have:

- the same negations (``not``, ``no``, ``never``, ``without``, any ``n't``...), counted;
- the same figures (digits and number words), in the same order;
- when they have the same words, the same order (``from A to B`` is not ``from B to A``);
- no opposite on one side only: a word and its prefixed opposite (``lock``/``unlock``,
  ``enable``/``disable``) or a common pair (`OPPOSITES`).

Each check can only turn a hit into a miss: a guard that fires wrongly costs a call upstream,
never a wrong answer. The measured cost on the labelled set is in docs/gateway.md.

>>> same_meaning_possible("Is Python compiled?", "Is Python not compiled?")
False
>>> same_meaning_possible("Who wrote Hamlet?", "Who is the author of Hamlet?")
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\d+(?:[.,:]\d+)*|[a-z]+(?:'[a-z]+)?")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NEGATIONS = _words("not no never none nobody nothing nowhere neither nor without cannot nope")
_NUMBER_WORDS = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy "
    "eighty ninety hundred thousand million billion trillion dozen half quarter twice"
)
_STOP = _words(
    "a an the is are was were be been being am do does did doing have has had i me my we our "
    "you your it its this that these those of to in on at for with by from as and or but if "
    "so than then there here what which who whom whose when where why how can could should "
    "would will shall may might must way please tell explain give show say about into out up "
    "down over under again any some all each just also very really get make use"
)
_PREFIXES = ("un", "dis", "de", "non", "in", "im", "ir", "il", "anti")
OPPOSITES: tuple[tuple[str, str], ...] = (
    ("on", "off"),
    ("in", "out"),
    ("up", "down"),
    ("upgrade", "downgrade"),
    ("increase", "decrease"),
    ("raise", "lower"),
    ("rise", "set"),
    ("add", "remove"),
    ("maximum", "minimum"),
    ("max", "min"),
    ("best", "worst"),
    ("largest", "smallest"),
    ("biggest", "smallest"),
    ("highest", "lowest"),
    ("higher", "lower"),
    ("more", "less"),
    ("before", "after"),
    ("first", "last"),
    ("open", "close"),
    ("start", "stop"),
    ("buy", "sell"),
    ("win", "lose"),
    ("boiling", "freezing"),
    ("hot", "cold"),
    ("compress", "extract"),
    ("import", "export"),
    ("push", "pull"),
    ("encrypt", "decrypt"),
    ("true", "false"),
    ("yes", "no"),
    ("pros", "cons"),
    ("advantages", "disadvantages"),
)
"""Common opposites (a general list, not learnt): one of a pair on one side only is a miss."""
_OPPOSITE_OF = {a: b for a, b in OPPOSITES} | {b: a for a, b in OPPOSITES}


@dataclass(frozen=True, slots=True)
class Signature:
    """What the checks compare, made once per question (kept beside its vector)."""

    negations: int
    figures: tuple[str, ...]
    content: tuple[str, ...]
    """The question's content words, lightly stemmed, in order, each once."""


def signature(text: str) -> Signature:
    """The negations, figures and content words of ``text``."""
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    negations = sum(1 for w in words if w in _NEGATIONS or w.endswith("n't"))
    figures = tuple(w for w in words if w[0].isdigit() or w in _NUMBER_WORDS)
    content: list[str] = []
    for word in words:
        if word.endswith("n't") or word in _NEGATIONS:
            continue
        stem = _stem(word)
        # "to" and "from" are kept where stop words go: they are what tells "from A to B" from
        # "from B to A" to the order check.
        if (word not in _STOP or word in _OPPOSITE_OF or word in ("to", "from")) and (
            stem not in content
        ):
            content.append(stem)
    return Signature(negations=negations, figures=figures, content=tuple(content))


def compatible(a: Signature, b: Signature) -> bool:
    """False when the two questions cannot mean the same, whatever their embeddings say."""
    if a.negations != b.negations or a.figures != b.figures:
        return False
    only_a = set(a.content) - set(b.content)
    only_b = set(b.content) - set(a.content)
    for word in only_a:
        if _OPPOSITE_OF.get(word) in only_b or any(_prefixed(word, other) for other in only_b):
            return False
    # Only the same words reordered: a paraphrase moves words about ("a Python list", "a list
    # in Python") and adds some, while "from A to B" / "from B to A" keep every word.
    return bool(only_a or only_b) or a.content == b.content


def same_meaning_possible(a: str, b: str) -> bool:
    """`compatible` on two texts."""
    return compatible(signature(a), signature(b))


def _stem(word: str) -> str:
    # Plurals only: "values" and "value" are one word here, "grams" and "gram" too.
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _prefixed(a: str, b: str) -> bool:
    """One word is the other with a negating prefix (lock/unlock, advantage/disadvantage)."""
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long == prefix + short for prefix in _PREFIXES) and len(short) > 2
