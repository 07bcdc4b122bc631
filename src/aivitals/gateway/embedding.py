"""Sentence embeddings offline, for the semantic cache: WordLlama, whose weights ship in its wheel.

WordLlama (``pip install 'aivitals[semantic]'``) is a static model: a 32,000-token table of
256-dimensional vectors (16 MB, inside the package) averaged over a text's tokens. No network, no
GPU; about 80 µs for a question on one core. It cannot see word order or "not" (an average of word
vectors): `semantic_guards` makes up for that.

The model is loaded once per process, on the first question (about 0.5 s), then shared; the
gateway asks its first question when it starts (`SemanticCache.warm`).

>>> embedder = WordLlamaEmbedder(dim=64)
>>> a, b = embedder.embed("Who wrote Hamlet?"), embedder.embed("Who is the author of Hamlet?")
>>> a.shape, round(float(a @ a), 3), float(a @ b) > 0.8
((64,), 1.0, True)
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from aivitals.config import ConfigError

DIMS = (64, 128, 256)
"""The sizes the shipped weights can be cut to (Matryoshka-trained: the first dimensions carry
the most meaning)."""
DEFAULT_DIM = 64
"""Measured on tests/data/semantic_pairs.yaml: at 64 dimensions, paraphrases score higher next to
look-alikes than at 128 or 256 (recall 0.63 against 0.53 and 0.46 at the same precision, 0.98,
threshold 0.90), and a vector is 256 bytes."""
EXTRA_HINT = "pip install 'aivitals[semantic]'"
_loading = threading.Lock()


class Embedder(Protocol):
    """Turns a text into a unit vector (float32), or None when it has nothing to embed."""

    @property
    def dim(self) -> int: ...

    def embed(self, text: str) -> NDArray[np.float32] | None: ...


def require_wordllama() -> None:
    """Raises `ConfigError` naming the extra when the package is not installed (at start)."""
    if importlib.util.find_spec("wordllama") is None:
        raise ConfigError(f"cache.semantic = true needs the wordllama package: {EXTRA_HINT}")


class WordLlamaEmbedder:
    """The shipped WordLlama model (``l2_supercat``), cut to ``dim`` dimensions."""

    def __init__(self, *, dim: int = DEFAULT_DIM) -> None:
        if dim not in DIMS:
            raise ConfigError(f"cache semantic_dim must be one of {DIMS}: {dim}")
        require_wordllama()
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, text: str) -> NDArray[np.float32] | None:
        vector = np.asarray(_model(self._dim).embed(text, norm=False)[0], dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        if not norm > 0.0:  # no known token (an empty text): nothing to compare
            return None
        out: NDArray[np.float32] = vector / np.float32(norm)
        return out


@functools.cache
def _model(dim: int) -> Any:
    with _loading:
        return _load(dim)


def _load(dim: int) -> Any:
    # wordllama's inference module calls logging.basicConfig(level=INFO) when imported, which
    # would take over the logging of a process that had not set it up yet: put it back.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from wordllama import WordLlama  # type: ignore[import-untyped]  # noqa: PLC0415

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    import wordllama  # noqa: PLC0415

    # The package's own folder as the cache: its weights/ and tokenizers/ are there. Its default
    # look-up misses the tokenizer it ships (it looks in "tokenizer/") and would download it.
    shipped = Path(wordllama.__file__).parent
    return WordLlama.load(
        cache_dir=shipped,
        disable_download=True,
        dim=256,
        trunc_dim=None if dim == 256 else dim,
    )
