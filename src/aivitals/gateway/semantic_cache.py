"""The semantic cache: a question asked again in other words gets the answer already paid for.

Asked after the exact cache misses, on the routes and models it is configured for. Only the last
user message's meaning is matched, and only against questions whose request was otherwise the
same: the rest of the body (model, system prompt, earlier messages, tools, temperature, response
format, ``stream``...) and the route are hashed, with the scope's value (the team by default), into
the partition a question is searched in. So an answer is only replayed to the tenant that paid for
it, to a request that differs from the first in its last question alone.

A question matches when its embedding (`embedding`, offline) is within ``threshold`` cosine
similarity of a cached one and the words-level checks of `semantic_guards` pass (negations, figures,
word order, opposites). The index keeps vectors and the exact cache's key of the answer
(`vector_index`); the answer itself lives in the exact cache (`cache`), under its bounds.

Not matched (the exact cache still applies): a last message that is not the user's (a tool result,
an assistant prefill), one with other parts than text (an image), a question over
`MAX_QUESTION_CHARS`, a request without the scope's value (no team with ``scope = "team"``).

>>> from aivitals.gateway.embedding import WordLlamaEmbedder
>>> cache = SemanticCache(embedder=WordLlamaEmbedder(dim=64), clock=lambda: 0.0)
>>> body = {"model": "m", "messages": [{"role": "user", "content": "Who wrote Hamlet?"}]}
>>> asked = cache.question("chat", body, scope_value="search")
>>> cache.add(cache.lookup(asked).pending, "exact-key-1")
>>> again = {"model": "m", "messages": [{"role": "user", "content": "Who is the author of Hamlet?"}]}
>>> found = cache.lookup(cache.question("chat", again, scope_value="search")).match
>>> found.value.exact_key, found.similarity > 0.9
('exact-key-1', True)
>>> cache.lookup(cache.question("chat", again, scope_value="other-team")).match is None
True
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from aivitals.config import ConfigError
from aivitals.gateway.cache import cache_key
from aivitals.gateway.embedding import Embedder
from aivitals.gateway.semantic_guards import Signature, compatible, signature
from aivitals.gateway.vector_index import Match, VectorIndex

Scope = Literal["key", "user", "team", "global"]
SEMANTIC_ROUTES = ("chat", "messages", "responses")
DEFAULT_THRESHOLD = 0.90
"""Precision 0.986, recall 0.634 on tests/data/semantic_pairs.yaml at 64 dimensions
(docs/gateway.md, "Semantic cache")."""
MAX_QUESTION_CHARS = 4_000
"""A longer question is not matched: the embedding of a long text says little of its details,
and embedding costs grow with it."""
_PLACEHOLDER = "\0aivitals:question\0"


@dataclass(frozen=True, slots=True)
class Question:
    """A request's last user question and the partition it is matched in."""

    partition: str
    text: str


@dataclass(frozen=True, slots=True)
class Pending:
    """What a lookup learnt about a question, to index it when its answer is cached."""

    partition: str
    vector: NDArray[np.float32]
    signature: Signature


@dataclass(frozen=True, slots=True)
class Cached:
    """What the index keeps beside a vector: where the answer is, and the question's words."""

    exact_key: str
    signature: Signature


@dataclass(frozen=True, slots=True)
class Lookup:
    pending: Pending | None
    """None when the question had nothing to embed."""
    match: Match[Cached] | None
    """The answer's place in the exact cache, and the similarity."""


class SemanticCache:
    """Questions by meaning, per partition; see the module's docstring. Thread-safe."""

    def __init__(
        self,
        *,
        embedder: Embedder,
        threshold: float = DEFAULT_THRESHOLD,
        scope: Scope = "team",
        routes: Iterable[str] = ("chat",),
        models: Iterable[str] = (),
        max_entries: int = 10_000,
        ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"cache semantic_threshold must be in (0, 1]: {threshold}")
        self.embedder = embedder
        self.threshold = threshold
        self.scope: Scope = scope
        self.routes = frozenset(routes)
        unknown = self.routes - set(SEMANTIC_ROUTES)
        if unknown:
            raise ConfigError(
                f"cache semantic_routes: {sorted(unknown)} have no user question to match; "
                f"choose from {list(SEMANTIC_ROUTES)}"
            )
        self.models = frozenset(models)
        self.index: VectorIndex[Cached] = VectorIndex(
            dim=embedder.dim, max_entries=max_entries, ttl_s=ttl_s, clock=clock
        )

    def __len__(self) -> int:
        return len(self.index)

    def warm(self) -> None:
        """Load the embedding model now (once per process), not under the first question."""
        self.embedder.embed("warm up")

    def applies(self, route: str, model: str) -> bool:
        """Whether requests of this route and model are matched by meaning."""
        return route in self.routes and (not self.models or model in self.models)

    def question(
        self, route: str, body: Mapping[str, Any], *, scope_value: str | None
    ) -> Question | None:
        """The question to match and its partition, or None when this request is not matched
        (see the module's docstring). Cheap: no embedding."""
        if scope_value is None and self.scope != "global":
            return None
        split = split_question(route, body)
        if split is None:
            return None
        text, rest = split
        partition = hashlib.sha256(
            f"{self.scope}\0{scope_value or ''}\0{cache_key(route, rest)}".encode()
        ).hexdigest()
        return Question(partition=partition, text=text)

    def lookup(self, question: Question) -> Lookup:
        """Embed the question and search its partition (the caller may run this on a thread)."""
        vector = self.embedder.embed(question.text)
        if vector is None:
            return Lookup(pending=None, match=None)
        asked = signature(question.text)
        pending = Pending(partition=question.partition, vector=vector, signature=asked)
        for found in self.index.search(question.partition, vector, self.threshold):
            if compatible(found.value.signature, asked):
                return Lookup(pending=pending, match=found)
        return Lookup(pending=pending, match=None)

    def add(self, pending: Pending, exact_key: str) -> None:
        """Index the question whose answer the exact cache now holds under ``exact_key``."""
        self.index.add(pending.partition, pending.vector, Cached(exact_key, pending.signature))

    def discard(self, question: Question, match: Match[Cached]) -> None:
        """Forget a match whose answer the exact cache no longer has."""
        self.index.discard(question.partition, match.value)


def split_question(route: str, body: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The last user message's text, and the body with that text replaced by a placeholder.

    >>> split_question("chat", {"model": "m", "messages": [{"role": "user", "content": "Hi?"}]})
    ('Hi?', {'model': 'm', 'messages': [{'role': 'user', 'content': '\\x00aivitals:question\\x00'}]})
    """
    # Copied along the path to the question only (the body itself is the request's, and the
    # rest of it, earlier messages and tools, can be large): the same bytes are hashed either way.
    rest = dict(body)
    field = "input" if route == "responses" else "messages"
    given = rest.get(field)
    if route == "responses" and isinstance(given, str):
        rest["input"] = _PLACEHOLDER
        return _bounded(given, rest)
    if not isinstance(given, list) or not given:
        return None
    last = given[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, str):
        rest[field] = [*given[:-1], {**last, "content": _PLACEHOLDER}]
        return _bounded(content, rest)
    if not isinstance(content, list) or not content:
        return None
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
            return None  # an image, a file, a tool result: not a question to match by meaning
        text = part.get("text")
        if not isinstance(text, str):
            return None
        texts.append(text)
    blanked = [{**part, "text": _PLACEHOLDER} for part in content]
    rest[field] = [*given[:-1], {**last, "content": blanked}]
    return _bounded("\n".join(texts), rest)


def _bounded(text: str, rest: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    if not text.strip() or len(text) > MAX_QUESTION_CHARS:
        return None
    return text, rest
