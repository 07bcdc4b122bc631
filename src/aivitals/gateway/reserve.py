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

**Output tokens.** ``max_completion_tokens`` or ``max_tokens`` (the smaller when both; Anthropic's
Messages API requires ``max_tokens``, the Responses API's field is ``max_output_tokens``), else the
model's context window (the catalog knows no separate output limit); times the choices asked for
(``n``, and ``best_of`` for completions) and, for completions, the prompts in the batch.
Embeddings have none.

**Server-side tools.** A request that lets the provider run a tool (Anthropic's ``web_search_*``,
``web_fetch_*``, ``code_execution_*`` tools; the Responses API's ``web_search`` and
``file_search``) reads the tool's results as input that the body does not hold: its input is
bounded by the context window, and each tool's fee is reserved for its ``max_uses`` (one use when
it sets none). A provider that loops over several samplings can bill more input than one window.

**Price.** The input bound is priced at the dearest of the input, 5-minute and 1-hour cache-write
rates (cache reads only make it cheaper), at the default tier and at the tier the request asks for
(``service_tier``, when it names one), with genai-prices or the price overrides, the way the call
itself will be priced.

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

import msgspec
from starlette.responses import JSONResponse

from aivitals.attribution import Attribution
from aivitals.gateway.budgets import BudgetLedger, Hold
from aivitals.gateway.replies import openai_error
from aivitals.model import Operation
from aivitals.pricing import Pricer
from aivitals.usage import TokenUsage

# Text parts of chat, Anthropic and Responses messages, and the Responses items that are text.
_TEXT_PARTS = frozenset({"text", "refusal", "input_text", "output_text"})
_TEXT_ITEMS = frozenset({"message"})
# Tool types (a prefix: Anthropic's carry a date) that the provider runs, billed per use.
_SERVER_TOOLS = (
    ("web_search", "web_search"),
    ("web_fetch", "web_fetch"),
    ("code_execution", "code_execution"),
    ("file_search", "file_search"),
)
# Requested tiers that name no price: the provider decides (Anthropic's standard_only is default).
_UNNAMED_TIERS = frozenset({"auto", "default", "standard_only"})
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
    output_limit: str | None = None,
) -> tuple[int, int] | None:
    """Upper bounds on the input and output tokens of a request (see the module's docstring);
    None when the output has no bound. ``output_limit`` names the body's output cap when the
    API has its own (``max_output_tokens``)."""
    window = context_window if context_window else None
    if (
        _has_non_text(body.get("messages"))
        or _has_non_text(body.get("input"))
        or server_tool_uses(body)
    ):
        if window is None:
            return None
        input_bound = window
    else:
        input_bound = body_bytes if window is None else min(body_bytes, window)
    if operation == "embeddings":
        return input_bound, 0
    limits = [n for n in (_output_limit(body, output_limit), window) if n is not None]
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
    output_limit: str | None = None,
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
    bounds = worst_case_tokens(
        operation, body, body_bytes=body_bytes, context_window=window, output_limit=output_limit
    )
    if bounds is None:
        return openai_error(
            400,
            f"the context window of model {model!r} is unknown, so this request's cost has no "
            "bound and the budgets it falls under cannot be held; send "
            f"{output_limit or 'max_tokens'}",
            type_="invalid_request_error",
            code="budget_needs_max_tokens",
        )
    input_tokens, output_tokens = bounds
    tools = server_tool_uses(body)
    plain = TokenUsage(
        input_tokens=input_tokens, output_tokens=output_tokens, server_tool_uses=tools
    )
    written = msgspec.structs.replace(plain, cache_write_tokens=input_tokens)
    written_1h = msgspec.structs.replace(written, cache_write_1h_tokens=input_tokens)
    asked = body.get("service_tier")
    tiers: list[str | None] = [None]
    if isinstance(asked, str) and asked not in _UNNAMED_TIERS:
        tiers.append(asked)
    costs = [
        cost.total_usd
        for usage in (plain, written, written_1h)
        for tier in tiers
        if (
            cost := pricer.price(
                provider=provider, model=model, usage=usage, at=at, service_tier=tier
            )
        )
        is not None
    ]
    if not costs:  # priced by name, yet the catalog refused these counts: no bound to hold
        return openai_error(
            403,
            f"model {model!r} cannot be priced for {input_tokens} input and {output_tokens} "
            "output tokens, so the budgets this request falls under cannot be held",
            type_="insufficient_quota",
            code="model_not_priced",
        )
    limited = _output_limit(body, output_limit) is not None
    basis = (
        f"{output_tokens:,} output tokens at most"
        if limited or operation == "embeddings"
        else f"no {output_limit or 'max_tokens'}: {output_tokens:,} output tokens, the model's "
        f"context window; send {output_limit or 'max_tokens'} to reserve less"
    )
    return WorstCase(max(costs), input_tokens, output_tokens, basis)


async def admit(
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
    output_limit: str | None = None,
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
        output_limit=output_limit,
    )
    if isinstance(worst, JSONResponse):
        return worst
    held = await ledger.reserve_async(
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
    """A chat message, Anthropic message or Responses input item with a part that is not text."""
    if not isinstance(messages, list):
        return False
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        if message.get("audio") is not None:  # an earlier audio answer, by id
            return True
        kind = message.get("type")
        if isinstance(kind, str) and kind not in _TEXT_ITEMS:  # a Responses item: a file, a call
            return True
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if not isinstance(part, Mapping) or part.get("type") not in _TEXT_PARTS:
                    return True
    return False


def server_tool_uses(body: Mapping[str, Any]) -> dict[str, int]:
    """The most uses of each server-side tool a request allows (see the module's docstring).

    >>> server_tool_uses({"tools": [{"type": "web_search_20250305", "name": "web_search",
    ...                              "max_uses": 5}, {"name": "my_function"}]})
    {'web_search': 5}
    """
    tools = body.get("tools")
    uses: dict[str, int] = {}
    for tool in tools if isinstance(tools, list) else ():
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if not isinstance(kind, str):
            continue
        known = next((k for prefix, k in _SERVER_TOOLS if kind.startswith(prefix)), None)
        if known is not None:
            uses[known] = uses.get(known, 0) + (_positive_int(tool.get("max_uses")) or 1)
    return uses


def _positive_int(value: Any) -> int | None:
    # bool is an int to Python, not to the API.
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _output_limit(body: Mapping[str, Any], field: str | None = None) -> int | None:
    names = _OUTPUT_LIMITS if field is None else (field,)
    given = [n for name in names if (n := _positive_int(body.get(name))) is not None]
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
