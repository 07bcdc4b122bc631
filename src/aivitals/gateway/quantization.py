"""The quantisation serving a self-hosted call: from a request header, the upstream's config, or
the model's name, in that order.

Labels are lower-case (``q4_K_M`` and ``Q4_K_M`` are one series), at most 32 characters of
letters, digits, ``_``, ``.`` and ``-``. A model name names its quantisation the way GGUF files,
Ollama tags and Hugging Face repositories do (llama.cpp's ``Q4_K_M``, ``IQ4_XS``, ``Q8_0``,
``F16``; ``-fp8``, ``-awq``, ``-gptq``; MLX's ``-4bit``), as a separate token at the end or
inside the name:

>>> [quantization_in_name(m) for m in ("qwen2.5-3b-q4_K_M", "llama-3-8b.Q8_0", "mistral:7b-instruct-fp16")]
['q4_k_m', 'q8_0', 'fp16']
>>> [quantization_in_name(m) for m in ("Qwen2.5-7B-Instruct-AWQ", "phi-4-IQ4_XS", "gpt-4o", "o3-mini")]
['awq', 'iq4_xs', None, None]
>>> quantization_label("Q5_K_S", source="quantization")
'q5_k_s'
>>> quantization_label("4 bits", source="X-Aivitals-Quantization")
Traceback (most recent call last):
...
ValueError: X-Aivitals-Quantization: must be a label of 1 to 32 letters, digits, '_', '.' or '-' (such as q4_K_M, fp8, awq), got '4 bits'
"""

from __future__ import annotations

import re
from functools import lru_cache

QUANTIZATION_HEADER = "x-aivitals-quantization"
"""The request header that names the quantisation serving a call."""

MAX_LABEL_CHARS = 32

_LABEL = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,31}")
# Hand-written: no library names quantisation formats. Longest alternatives first, so q4_k_m
# is not read as q4_k; a token is bounded by anything but a letter or digit (an underscore
# inside q4_k_m belongs to the token).
_IN_NAME = re.compile(
    r"(?<![a-z0-9])("
    r"iq[1-4]_(?:xxs|xs|nl|s|m)"
    r"|q[2-8]_k(?:_[sml])?"
    r"|q[4-8]_[01]"
    r"|mxfp4|nvfp4|bf16|fp16|f16|fp32|f32|fp8|fp4|int8|int4|w4a16|w8a8|awq|gptq|exl2|4bit|8bit"
    r")(?![a-z0-9])"
)
_CANONICAL = {"f16": "fp16", "f32": "fp32"}


def quantization_label(value: str, *, source: str) -> str:
    """``value`` as a label, lower-case; raises `ValueError` naming ``source`` when it is not one."""
    label = value.strip().lower()
    if not _LABEL.fullmatch(label):
        raise ValueError(
            f"{source}: must be a label of 1 to {MAX_LABEL_CHARS} letters, digits, '_', '.' or "
            f"'-' (such as q4_K_M, fp8, awq), got {value!r}"
        )
    return _CANONICAL.get(label, label)


@lru_cache(maxsize=4096)
def quantization_in_name(model: str) -> str | None:
    """The quantisation a model's name states (the last one named), or None."""
    found = _IN_NAME.findall(model.lower())
    if not found:
        return None
    last: str = found[-1]
    return _CANONICAL.get(last, last)


def quantization_of(header: str | None, configured: str | None, model: str) -> str | None:
    """The call's quantisation: the request's header, else the upstream's, else the model name's.
    Raises `ValueError` for a header that is not a label."""
    if header is not None:
        return quantization_label(header, source="X-Aivitals-Quantization")
    if configured is not None:
        return configured
    return quantization_in_name(model)
