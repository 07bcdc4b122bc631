"""The span attributes aivitals writes for a recorded `Call`: GenAI semantic conventions first.

One mapping for every span aivitals makes (the SDK's call spans, the gateway's request spans), so
the OTLP receiver reads back exactly what we write. Names follow the OpenTelemetry GenAI
conventions (v1.41): ``gen_ai.usage.input_tokens`` includes cache reads and writes, as aivitals'
``input_tokens`` does. What they have no name for is under ``aivitals.*``; ``aivitals.call.id``
is the `Call`'s id, so a call both recorded and exported as a span is one call.

>>> from aivitals.model import Call
>>> attributes = call_attributes(Call(provider="openai", model="gpt-4o", latency_ms=1.0,
...                                   input_tokens=10, output_tokens=2, id="c-1"))
>>> attributes["gen_ai.operation.name"], attributes["aivitals.call.id"]
('chat', 'c-1')
"""

from __future__ import annotations

from opentelemetry.util.types import AttributeValue

from aivitals.model import Call

CALL_ID = "aivitals.call.id"
"""The `Call.id` of the call a span records (the receiver's de-duplication key)."""

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
REQUEST_STREAM = "gen_ai.request.stream"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
USER_ID = "user.id"
FEATURE = "aivitals.feature"
TEAM = "aivitals.team"
PROMPT_VERSION = "aivitals.prompt_version"
ENVIRONMENT = "aivitals.environment"

OPERATIONS = {"chat": "chat", "text_completion": "text_completion", "embeddings": "embeddings"}
"""aivitals' operations by their semconv ``gen_ai.operation.name`` (``other`` has none)."""


def span_name(operation: str, model: str | None) -> str:
    """``{gen_ai.operation.name} {model}``, as the conventions name a client span."""
    name = OPERATIONS.get(operation, operation)
    return f"{name} {model}" if model else name


def call_attributes(call: Call) -> dict[str, AttributeValue]:
    """Every attribute a recorded call gives its span (zero counts of optional kinds left out)."""
    attributes: dict[str, AttributeValue] = {
        OPERATION: OPERATIONS.get(call.operation, call.operation),
        PROVIDER: call.provider,
        REQUEST_MODEL: call.model,
        INPUT_TOKENS: call.input_tokens,
        OUTPUT_TOKENS: call.output_tokens,
        CALL_ID: call.id,
        "aivitals.status": call.status,
    }
    if call.response_model:
        attributes[RESPONSE_MODEL] = call.response_model
    if call.cached_input_tokens:
        attributes[CACHE_READ_TOKENS] = call.cached_input_tokens
    if call.cache_write_tokens:
        attributes[CACHE_CREATION_TOKENS] = call.cache_write_tokens
    if call.reasoning_tokens:
        attributes[REASONING_TOKENS] = call.reasoning_tokens
    if call.finish_reason:
        attributes[FINISH_REASONS] = [call.finish_reason]
    if call.ttft_ms is not None:
        attributes[TIME_TO_FIRST_CHUNK] = call.ttft_ms / 1000.0
    if call.error_type:
        attributes[ERROR_TYPE] = call.error_type
    if call.tokens_estimated:
        attributes["aivitals.tokens_estimated"] = True
    if call.cost_usd is not None:
        attributes["aivitals.cost_usd"] = float(call.cost_usd)
    if call.cache:
        attributes["aivitals.cache"] = call.cache
    if call.service_tier:
        attributes["aivitals.service_tier"] = call.service_tier
    for name, value in (
        (USER_ID, call.user),
        (FEATURE, call.feature),
        (TEAM, call.team),
        (PROMPT_VERSION, call.prompt_version),
        (ENVIRONMENT, call.environment),
    ):
        if value:
            attributes[name] = value
    return attributes
