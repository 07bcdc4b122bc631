"""The attribute names each tracing convention gives a model call's facts, in one table per fact.

Conventions covered: OpenTelemetry's GenAI semantic conventions (current and deprecated names),
OpenInference (Arize Phoenix), and what Traceloop's OpenLLMetry, OpenLIT and the official
``opentelemetry-instrumentation-openai-v2`` really send. Each table lists names most trusted
first; the mapping takes the first one a span carries and never adds two names for the same fact,
so a span that speaks two conventions at once is not counted twice. docs/otel.md ("Attribute
mapping") is the same table for people.

>>> normalise_provider("Anthropic"), normalise_provider("gcp.vertex_ai"), normalise_provider("openai.chat")
('anthropic', 'google', 'openai')
>>> error_info_of("<class 'openai.RateLimitError'>", None).error_type
'rate_limit'
>>> error_info_of("APITimeoutError", None, "Request timed out.")
ErrorInfo(error_type='timeout', http_status=None, message='APITimeoutError: Request timed out.')
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

from aivitals.errors import ErrorInfo, classify_error_name
from aivitals.model import ERROR_TYPES, ErrorType, Operation

CALL_ID = ("aivitals.call.id", "aivitals.call_id")
"""aivitals' own spans (gateway, SDK) name their `Call`; ``aivitals.call_id`` is the older name."""

PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
OPERATION = "gen_ai.operation.name"
OPENINFERENCE_KIND = "openinference.span.kind"
AGENT = ("gen_ai.agent.name", "agent_name")
"""A span that names an agent and no operation is the agent's (Pydantic AI's ``agent run``,
which adds up its model calls' tokens), not a model call."""
TRACELOOP_REQUEST_TYPE = "llm.request.type"

# OpenInference's llm.model_name is the model as the response names it when there is one; it is
# still the best "requested" model a span of that convention has. A span with none of these
# takes its response model.
MODEL = (
    "gen_ai.request.model",
    "llm.request.model_name",  # OpenInference's newer instrumentations (Anthropic's)
    "llm.model_name",
    "embedding.model_name",  # OpenInference's embedding spans
)
RESPONSE_MODEL = ("gen_ai.response.model", "llm.response.model_name")
INVOCATION_PARAMETERS = ("llm.invocation_parameters", "embedding.invocation_parameters")
"""OpenInference's request parameters as JSON text: the model (and ``user``) of a failed call,
whose span has no ``llm.model_name``, are only there."""

INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
OUTPUT_TOKENS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
TOTAL_TOKENS = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens", "llm.token_count.total")
CACHE_READ_TOKENS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",  # Traceloop, OpenLIT, Strands
    "llm.token_count.prompt_details.cache_read",
)
CACHE_WRITE_TOKENS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",  # Traceloop, OpenLIT
    "gen_ai.usage.cache_write_input_tokens",  # Strands
    "llm.token_count.prompt_details.cache_write",
)
REASONING_TOKENS = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",  # Traceloop, OpenLIT
    "llm.token_count.completion_details.reasoning",
)

TTFT_SECONDS = (
    "gen_ai.response.time_to_first_chunk",
    "gen_ai.server.time_to_first_token",  # OpenLIT
)
STREAM = ("gen_ai.request.stream", "gen_ai.is_streaming")
"""Whether the call was streamed: OpenLIT gives every call a time to first token, for one that was
not streamed it is the whole call, and not kept."""
FIRST_TOKEN_EVENTS = frozenset({"First Token Stream Event", "gen_ai.content.completion.chunk"})
"""Span events whose time marks the first token: OpenInference's, and OpenLLMetry's event per
streamed chunk (the first one's time)."""

FINISH_REASONS = (
    "gen_ai.response.finish_reasons",
    "llm.finish_reason",  # OpenInference
    "gen_ai.completion.0.finish_reason",  # Traceloop without content events
)
ERROR_TYPE = "error.type"
HTTP_STATUS = ("http.response.status_code", "http.status_code")
SERVICE_TIER = (
    "openai.response.service_tier",
    "gen_ai.openai.response.service_tier",
    "aivitals.service_tier",
)
OWN_STATUS = ("aivitals.status",)
"""aivitals' own spans say ``cancelled`` (the caller went away), which no convention can."""
CACHE = ("aivitals.cache",)
"""The gateway's response cache: a ``hit`` costs nothing."""
TOKENS_ESTIMATED = ("aivitals.tokens_estimated",)
COST = ("gen_ai.usage.cost", "llm.usage.cost", "gen_ai.cost.usd")
"""Senders' own cost attributes: documented so it is clear they are never read (aivitals prices)."""

OPERATIONS: Mapping[str, Operation] = MappingProxyType(
    {
        "chat": "chat",
        "generate_content": "chat",
        "text_completion": "text_completion",
        "embeddings": "embeddings",
        # Traceloop's llm.request.type values.
        "completion": "text_completion",
        "embedding": "embeddings",
        "rerank": "other",
        "other": "other",  # aivitals' own spans, for a call of no named operation
    }
)
"""``gen_ai.operation.name`` (or Traceloop's ``llm.request.type``) of a model call. Any other
operation (``invoke_agent``, ``execute_tool``, ``create_agent``...) is no model call: an agent's
span may sum its model calls' tokens, and recording it too would count them twice."""

OPENINFERENCE_KINDS: Mapping[str, Operation] = MappingProxyType(
    {"LLM": "chat", "EMBEDDING": "embeddings"}
)
"""OpenInference span kinds that are model calls; CHAIN, AGENT, TOOL, RETRIEVER... are not."""

_PROVIDERS: Mapping[str, str] = MappingProxyType(
    {
        # Semantic-convention names to the price catalog's (genai-prices) provider ids.
        "gcp.gen_ai": "google",
        "gcp.vertex_ai": "google",
        "gcp.gemini": "google",
        "vertex_ai": "google",
        "vertexai": "google",
        "gemini": "google",
        "aws.bedrock": "aws",
        "bedrock": "aws",
        "az.ai.openai": "azure",
        "azure.ai.openai": "azure",
        "az.ai.inference": "azure",
        "azure.ai.inference": "azure",
        "x_ai": "x-ai",
        "xai": "x-ai",
        "mistral_ai": "mistral",
        "mistralai": "mistral",
        "ibm.watsonx.ai": "ibm",
    }
)
_PROVIDER_PREFIXES = frozenset({"openai", "anthropic", "google", "mistral", "cohere", "groq"})

# Exception classes that openai and anthropic raise for one HTTP status each (APIStatusError
# subclasses): the name is all an ``error.type`` carries, and it stands for that status.
_STATUS_ERRORS: Mapping[str, int] = MappingProxyType(
    {
        "BadRequestError": 400,
        "AuthenticationError": 401,
        "PermissionDeniedError": 403,
        "NotFoundError": 404,
        "ConflictError": 409,
        "RequestTooLargeError": 413,
        "UnprocessableEntityError": 422,
        "RateLimitError": 429,
        "InternalServerError": 500,
        "ServiceUnavailableError": 503,
        "OverloadedError": 529,
    }
)


@lru_cache(maxsize=256)  # a server hears a handful of names, once a span each
def normalise_provider(name: str) -> str:
    """A sender's provider name as the price catalog knows it (lower case, catalog ids)."""
    lowered = name.strip().lower()
    known = _PROVIDERS.get(lowered)
    if known is not None:
        return known
    # Vercel's AI SDK names the API too: "openai.chat", "anthropic.messages".
    head, dot, _ = lowered.partition(".")
    if dot and head in _PROVIDER_PREFIXES:
        return head
    return lowered


def class_name(error_type: str) -> str:
    """``<class 'openai.RateLimitError'>`` and ``openai.RateLimitError`` as ``RateLimitError``."""
    name = error_type.strip()
    if name.startswith("<class '") and name.endswith("'>"):
        name = name[8:-2]
    return name.rpartition(".")[2]


@lru_cache(maxsize=256)  # a burst of failures (a rate limit) repeats one type and message
def error_info_of(error_type: str | None, http_status: int | None, message: str = "") -> ErrorInfo:
    """aivitals' `ErrorInfo` for a span's ``error.type`` (an exception class, a status code as
    text, a provider's error code, or aivitals' own name), its HTTP status and status message.

    ``http_status`` stays what the span said: a class name that implies a status (openai's
    ``RateLimitError`` is always a 429) helps classify, but is not recorded as one.
    """
    name = class_name(error_type) if error_type else ""
    implied = None
    if name.isdigit():  # the semantic conventions allow the status code itself
        implied = int(name)
        name = ""
    else:
        implied = _STATUS_ERRORS.get(name)
    info = classify_error_name(name, message, http_status=http_status or implied)
    own: ErrorType | None = error_type if error_type in ERROR_TYPES else None  # type: ignore[assignment]  # checked
    return ErrorInfo(own or info.error_type, http_status, info.message)
