"""Token estimates for when a provider reports no usage (a stream cut short, usage not asked for).

No tokenizer is downloaded at run time, so this is the usual four-characters-a-token rule; every
call that uses it is flagged ``tokens_estimated``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4  # role and framing, as OpenAI counts them


def estimate_text_tokens(text: str) -> int:
    return -(-len(text) // _CHARS_PER_TOKEN) if text else 0


def estimate_prompt_tokens(messages: Iterable[Any] | None = None, prompt: Any = None) -> int:
    """Estimate input tokens of chat ``messages`` or a completion/embedding ``prompt``."""
    total = 0
    for message in messages or ():
        total += _TOKENS_PER_MESSAGE
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            total += estimate_text_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    total += estimate_text_tokens(part["text"])
    if isinstance(prompt, str):
        total += estimate_text_tokens(prompt)
    elif isinstance(prompt, list):
        total += sum(estimate_text_tokens(p) for p in prompt if isinstance(p, str))
    return total
