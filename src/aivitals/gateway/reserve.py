"""Budget admission: the most a request can cost, held against its budgets before it goes upstream.

**Input tokens.** A token of a byte-level BPE tokenizer (OpenAI's, Anthropic's, Llama 3's) or of
a SentencePiece one with byte fallback covers at least one byte of UTF-8 text. Everything a model
reads as text (messages, names, tool definitions, schemas) is inside the request body, where
JSON escaping only makes it longer, and the few tokens a chat template adds per message (role,
separators) are fewer than the bytes of that message's JSON framing (``{"role":"user",
"content":""}`` is 28). So the body's length in bytes bounds the input tokens of a text request:
an upper bound, not an estimate, and free to compute (no tokenizer, no pass over the text). It
counts English about four times over; the reserve is settled to the real cost when the call ends,
so over-counting only narrows the room near a budget's end. A part that is not text (an image,
audio, a file) costs tokens that its bytes in the body do not bound (a URL is short): then the
bound is the model's context window, which no input can exceed.

**Output tokens.** ``max_completion_tokens`` or ``max_tokens`` (the smaller when both), else the
model's context window (the catalog knows no separate output limit); times the choices asked for
(``n``, and ``best_of`` for completions) and, for completions, the prompts in the batch.
Embeddings have none.

**Price.** The input bound is priced at the dearer of the input and cache-write rates (cache
reads only make it cheaper) with genai-prices or the price overrides, the way the call itself
will be priced.

A budget can only be held for what can be bounded and priced, so under a budget a model with no
known price is refused (403 ``model_not_priced``: add it to a price override file, at 0 for a free
self-hosted model), and so is a request with no output limit for a model whose context window is
unknown (400: send ``max_tokens``).

>>> worst_case_tokens("chat", {"messages": [], "max_tokens": 100, "n": 2}, body_bytes=60,
...                   context_window=None)
(60, 200)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from starlette.responses import JSONResponse

from aivitals.attribution import Attribution
from aivitals.gateway.budgets import BudgetLedger, Hold
from aivitals.gateway.replies import openai_error
from aivitals.model import Operation
from aivitals.pricing import Pricer
from aivitals.usage import TokenUsage

_TEXT_PARTS = frozenset({"text", "refusal"})
_OUTPUT_LIMITS = ("max_completion_tokens", "max_tokens")


@dataclass(frozen=True, slots=True)
class WorstCase:
    """The most a request can cost, and the token bounds it was priced from."""

    usd: Decimal
    input_tokens: int
    output_tokens: int
    basis: str


def worst_case_tokens(
    operation: Operation,
    body: Mapping[str, Any],
    *,
    body_bytes: int,
    context_window: int | None,
) -> tuple[int, int] | None:
    """Upper bounds on the input and output tokens of a request (see the module's docstring);
    None when the output has no bound."""
    window = context_window if context_window else None
    if _has_non_text(body.get("messages")):
        if window is None:
            return None
        input_bound = window
    else:
        input_bound = body_bytes if window is None else min(body_bytes, window)
    if operation == "embeddings":
        return input_bound, 0
    limits = [n for n in (_output_limit(body), window) if n is not None]
    if not limits:
        return None
    return input_bound, min(limits) * _choices(operation, body)


def worst_case(
    pricer: Pricer,
    *,
    provider: str,
    model: str,
    operation: Operation,
    body: Mapping[str, Any],
    body_bytes: int,
    at: datetime,
) -> WorstCase | JSONResponse:
    """The priced worst case of a request, or the refusal when it cannot be bounded or priced."""
    if not pricer.is_priced(provider=provider, model=model):
        return openai_error(
            403,
            f"model {model!r} has no known price, so the budgets this request falls under "
            "cannot be held; add the model to a price override file (at 0 for a free model)",
            type_="insufficient_quota",
            code="model_not_priced",
        )
    window = pricer.context_window(provider=provider, model=model)
    bounds = worst_case_tokens(operation, body, body_bytes=body_bytes, context_window=window)
    if bounds is None:
        return openai_error(
            400,
            f"the context window of model {model!r} is unknown, so this request's cost has no "
            "bound and the budgets it falls under cannot be held; send max_tokens",
            type_="invalid_request_error",
            code="budget_needs_max_tokens",
        )
    input_tokens, output_tokens = bounds
    plain = TokenUsage(input_tokens=input_tokens, output_tokens=output_tokens)
    written = TokenUsage(
        input_tokens=input_tokens, output_tokens=output_tokens, cache_write_tokens=input_tokens
    )
    costs = [
        cost.total_usd
        for usage in (plain, written)
        if (cost := pricer.price(provider=provider, model=model, usage=usage, at=at)) is not None
    ]
    if not costs:  # priced by name, yet the catalog refused these counts: no bound to hold
        return openai_error(
            403,
            f"model {model!r} cannot be priced for {input_tokens} input and {output_tokens} "
            "output tokens, so the budgets this request falls under cannot be held",
            type_="insufficient_quota",
            code="model_not_priced",
        )
    limited = _output_limit(body) is not None
    basis = (
        f"{output_tokens:,} output tokens at most"
        if limited or operation == "embeddings"
        else f"no max_tokens: {output_tokens:,} output tokens, the model's context window; "
        "send max_tokens to reserve less"
    )
    return WorstCase(max(costs), input_tokens, output_tokens, basis)


def admit(
    ledger: BudgetLedger,
    pricer: Pricer,
    *,
    provider: str,
    model: str,
    operation: Operation,
    attribution: Attribution,
    body: Mapping[str, Any],
    body_bytes: int,
    at: datetime,
) -> Hold | JSONResponse | None:
    """Reserve a request's worst case against its budgets: the `Hold` to release when the call
    ends, the refusal to send, or None when no budget covers the request."""
    who = attribution
    if not ledger.applies(user=who.user, team=who.team, feature=who.feature):
        return None
    worst = worst_case(
        pricer,
        provider=provider,
        model=model,
        operation=operation,
        body=body,
        body_bytes=body_bytes,
        at=at,
    )
    if isinstance(worst, JSONResponse):
        return worst
    held = ledger.reserve(
        worst.usd, user=who.user, team=who.team, feature=who.feature, basis=worst.basis
    )
    if isinstance(held, Hold):
        return held
    # openai clients retry a 429 at once by default: when only the reset can help, say so.
    headers = {"retry-after": str(held.retry_after_s)}
    if held.final:
        headers["x-should-retry"] = "false"
    return openai_error(
        429,
        f"budget exceeded: {held.message}",
        type_="insufficient_quota",
        code="budget_exceeded",
        headers=headers,
    )


def _has_non_text(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        if message.get("audio") is not None:  # an earlier audio answer, by id
            return True
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if not isinstance(part, Mapping) or part.get("type") not in _TEXT_PARTS:
                    return True
    return False


def _positive_int(value: Any) -> int | None:
    # bool is an int to Python, not to the API.
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _output_limit(body: Mapping[str, Any]) -> int | None:
    given = [n for name in _OUTPUT_LIMITS if (n := _positive_int(body.get(name))) is not None]
    return min(given) if given else None


def _choices(operation: Operation, body: Mapping[str, Any]) -> int:
    """Completions generated and billed: ``n`` (``best_of`` when larger) per prompt."""
    each = max(_positive_int(body.get("n")) or 1, _positive_int(body.get("best_of")) or 1)
    if operation != "text_completion":
        return each
    prompt = body.get("prompt")
    # A list of strings or of token lists is a batch; a list of ints is one tokenized prompt.
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        return each * len(prompt)
    return each
