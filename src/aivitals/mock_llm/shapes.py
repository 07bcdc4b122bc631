"""Response bodies out, in OpenAI's shapes, as plain dicts for ``msgspec.json.encode``.

The text is filler, one word per visible completion token, cut at `MAX_TEXT_WORDS` words so a
request for a million tokens reports a million in its usage without sending them:

>>> filler_text(3)
'Lorem ipsum dolor'
>>> "".join(filler_pieces(5, max_pieces=2)) == filler_text(5)
True
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import os
import struct
from typing import Any

from aivitals.mock_llm.answers import REFUSAL_SENTENCE, pieces
from aivitals.mock_llm.plan import Plan
from aivitals.mock_llm.validation import EmbeddingRequest

MAX_TEXT_WORDS = 2048
MAX_STREAM_PIECES = 64
SYSTEM_FINGERPRINT = "fp_aivitals_mock"
_MODELS_CREATED = 1_700_000_000  # a fixed date keeps /v1/models byte-for-byte stable

_LOREM = (
    "Lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua Ut enim ad minim veniam quis nostrud exercitation ullamco "
    "laboris nisi ut aliquip ex ea commodo consequat"
)
_VOCABULARY = _LOREM.split()
_WORDS = [_VOCABULARY[i % len(_VOCABULARY)] for i in range(MAX_TEXT_WORDS)]
_TEXT = " ".join(_WORDS)
# _WORD_ENDS[n] is where the first n words end in _TEXT (each word and its separating space count
# len + 1, less the space the first word lacks), so any prefix of the text is one slice.
_WORD_ENDS = [0, *(end - 1 for end in itertools.accumulate(len(word) + 1 for word in _WORDS))]


def filler_text(words: int) -> str:
    """The first ``words`` filler words (at most `MAX_TEXT_WORDS`), space-separated."""
    return _TEXT[: _WORD_ENDS[min(max(words, 0), MAX_TEXT_WORDS)]]


def filler_pieces(words: int, *, max_pieces: int = MAX_STREAM_PIECES) -> list[str]:
    """`filler_text` cut into at most ``max_pieces`` runs of whole words, as a stream sends them."""
    words = min(max(words, 0), MAX_TEXT_WORDS)
    count = min(words, max_pieces)
    bounds = [_WORD_ENDS[words * i // count] for i in range(count + 1)] if count else [0]
    return [_TEXT[bounds[i] : bounds[i + 1]] for i in range(count)]


def answer_text(plan: Plan) -> str:
    """The answer's text: the one asked for (``X-Mock-Answer``, ``X-Mock-Text``), a refusal
    sentence for a refusal, else the filler for the visible tokens."""
    if plan.answer is not None:
        return plan.answer
    if plan.finish_reason == "refusal":
        return REFUSAL_SENTENCE
    return filler_text(plan.visible_tokens)


def answer_pieces(plan: Plan, *, max_pieces: int = MAX_STREAM_PIECES) -> list[str]:
    """`answer_text` as a stream sends it, in at most ``max_pieces`` runs of whole words."""
    if plan.answer is None and plan.finish_reason != "refusal":
        return filler_pieces(plan.visible_tokens, max_pieces=max_pieces)
    return pieces(answer_text(plan), max_pieces=max_pieces)


def tool_call_id() -> str:
    return "call_" + os.urandom(12).hex()


def new_id(prefix: str) -> str:
    """An id in OpenAI's style, such as ``chatcmpl-`` and 24 hex digits."""
    return prefix + os.urandom(12).hex()


def usage(plan: Plan, *, details: bool) -> dict[str, Any]:
    """The usage object; chat adds the token details, legacy completions never had them."""
    body: dict[str, Any] = {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
    }
    if details:
        body["prompt_tokens_details"] = {"cached_tokens": plan.cached_tokens, "audio_tokens": 0}
        if plan.cache_write_tokens:
            body["prompt_tokens_details"]["cache_write_tokens"] = plan.cache_write_tokens
        body["completion_tokens_details"] = {
            "reasoning_tokens": plan.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return body


def chat_tier(plan: Plan, requested: str | None) -> str:
    """``service_tier`` as OpenAI reports it: the requested tier, ``auto`` (or none) served as
    ``default``, unless ``X-Mock-Service-Tier`` says which tier served it."""
    if plan.service_tier is not None:
        return plan.service_tier
    return "default" if requested in (None, "auto") else str(requested)


def chat_finish(plan: Plan) -> str:
    """A chat refusal finishes with ``stop``: the refusal is in ``message.refusal`` instead."""
    return "stop" if plan.finish_reason == "refusal" else plan.finish_reason


def chat_completion(
    plan: Plan, *, model: str, id: str, created: int, requested_tier: str | None = None
) -> dict[str, Any]:
    """A whole ``chat.completion``."""
    text = answer_text(plan)
    refused = plan.finish_reason == "refusal"
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if refused else text,
        "refusal": text if refused else None,
        "annotations": [],
    }
    if plan.tool_call is not None:
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": tool_call_id(),
                "type": "function",
                "function": {"name": plan.tool_call, "arguments": text or "{}"},
            }
        ]
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": chat_finish(plan),
            }
        ],
        "usage": usage(plan, details=True),
        "service_tier": chat_tier(plan, requested_tier),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def chat_chunk(
    *,
    id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    include_usage: bool = False,
    service_tier: str = "default",
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with one choice; ``"usage": null`` when usage was asked for."""
    chunk: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": service_tier,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def text_completion(plan: Plan, *, model: str, id: str, created: int) -> dict[str, Any]:
    """A whole legacy ``text_completion``."""
    return {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "text": answer_text(plan),
                "index": 0,
                "logprobs": None,
                "finish_reason": chat_finish(plan),
            }
        ],
        "usage": usage(plan, details=False),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def text_chunk(
    *,
    id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """One streamed legacy ``text_completion`` chunk."""
    chunk: dict[str, Any] = {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}],
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def usage_chunk(
    plan: Plan,
    *,
    id: str,
    created: int,
    model: str,
    object: str,
    details: bool,
    service_tier: str = "default",
) -> dict[str, Any]:
    """The extra last chunk of a stream with ``include_usage``: no choices, only the usage."""
    chunk: dict[str, Any] = {
        "id": id,
        "object": object,
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [],
        "usage": usage(plan, details=details),
    }
    if details:
        chunk["service_tier"] = service_tier
    return chunk


def embedding_vector(key: bytes, dimensions: int) -> list[float]:
    """A unit vector that depends only on the input and the dimension count.

    >>> vector = embedding_vector(b"hello", 4)
    >>> vector == embedding_vector(b"hello", 4), round(sum(x * x for x in vector), 9)
    (True, 1.0)
    """
    raw = struct.unpack(f"<{dimensions}I", hashlib.shake_128(key).digest(4 * dimensions))
    values = [word / 2147483648.0 - 1.0 for word in raw]  # uniform in [-1, 1)
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embeddings(request: EmbeddingRequest, *, prompt_tokens: int | None = None) -> dict[str, Any]:
    """The ``list`` of embeddings; base64 is little-endian float32, as the openai client decodes.

    ``prompt_tokens`` (``X-Mock-Prompt-Tokens``) replaces the estimate from the input.
    """
    tokens = request.prompt_tokens if prompt_tokens is None else prompt_tokens
    data: list[dict[str, Any]] = []
    for index, key in enumerate(request.inputs):
        vector = embedding_vector(key, request.dimensions)
        encoded: list[float] | str = vector
        if request.base64:
            packed = struct.pack(f"<{request.dimensions}f", *vector)
            encoded = base64.b64encode(packed).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_list(models: tuple[str, ...]) -> dict[str, Any]:
    """``GET /v1/models``."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": _MODELS_CREATED, "owned_by": "aivitals-mock"}
            for name in models
        ],
    }
