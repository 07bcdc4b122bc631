"""Request bodies in: check them as OpenAI would and keep only what the mock needs.

A body the real API would refuse raises `RequestError`, with OpenAI's wording, parameter and code:

>>> read_chat({"model": "gpt-4o-mini", "messages": []})
Traceback (most recent call last):
...
aivitals.mock_llm.validation.RequestError: Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.

Prompt tokens are estimated from the text, never tokenized: ``ceil(chars / 4)`` per text (at
least 1), plus 4 per chat message for the role and separators. A token array counts its length.

>>> read_chat({"model": "m", "messages": [{"role": "user", "content": "Hello there!"}]}).prompt_tokens
7
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

_MESSAGE_OVERHEAD_TOKENS = 4
_MAX_DIMENSIONS = 4096
DEFAULT_DIMENSIONS = 8

_JSON_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


class RequestError(ValueError):
    """A body the API would refuse: answered 400 with OpenAI's ``invalid_request_error`` shape."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """A chat or legacy text completion request."""

    model: str
    prompt_tokens: int
    stream: bool
    include_usage: bool
    max_tokens: int | None
    service_tier: str | None = None
    """As the request asked for it (OpenAI: auto, default, flex, priority; Anthropic: auto,
    standard_only); the reply reports the tier each provider would."""


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    inputs: tuple[bytes, ...]
    """Each input as bytes to hash: UTF-8 text, or the JSON of a token array."""
    prompt_tokens: int
    dimensions: int
    base64: bool


_decoder = msgspec.json.Decoder()


def decode_body(raw: bytes) -> dict[str, Any]:
    """Parse a JSON object body."""
    try:
        body = _decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):  # msgspec guards its depth with RecursionError
        raise RequestError(
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON "
            "payload, but what was sent was not valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise RequestError(f"The request body must be a JSON object, got {_kind(body)}.")
    return body


def read_chat(body: dict[str, Any]) -> GenerateRequest:
    """``POST /v1/chat/completions``: ``model`` and a non-empty ``messages`` array are required."""
    model = _model(body)
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array of objects", messages)
    if not messages:
        raise RequestError(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    tokens = 0
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _wrong_type(param, "an object", message)
        if not isinstance(message.get("role"), str):
            raise _missing(f"{param}.role")
        tokens += _MESSAGE_OVERHEAD_TOKENS + _text_tokens(_content_chars(message.get("content")))
    return _generate(body, model, tokens)


def read_completion(body: dict[str, Any]) -> GenerateRequest:
    """``POST /v1/completions``: ``model`` and ``prompt`` (text, texts or token arrays)."""
    model = _model(body)
    tokens = sum(_input_tokens(item) for item in _inputs(body, "prompt"))
    return _generate(body, model, tokens)


def read_embedding(body: dict[str, Any]) -> EmbeddingRequest:
    """``POST /v1/embeddings``: ``model`` and ``input``; ``dimensions`` defaults to 8."""
    model = _model(body)
    inputs = _inputs(body, "input")
    dimensions = body.get("dimensions")
    if dimensions is None:
        dimensions = DEFAULT_DIMENSIONS
    elif not _is_int(dimensions):
        raise _wrong_type("dimensions", "an integer", dimensions)
    elif not 1 <= dimensions <= _MAX_DIMENSIONS:
        raise RequestError(
            f"Invalid 'dimensions': expected a value from 1 to {_MAX_DIMENSIONS}, "
            f"but got {dimensions} instead.",
            param="dimensions",
            code="invalid_value",
        )
    encoding = body.get("encoding_format")
    if encoding not in (None, "float", "base64"):
        raise RequestError(
            f"Invalid value for 'encoding_format': {encoding!r}. Supported values are: "
            "'float' and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    return EmbeddingRequest(
        model=model,
        inputs=tuple(
            item.encode() if isinstance(item, str) else msgspec.json.encode(item) for item in inputs
        ),
        prompt_tokens=sum(_input_tokens(item) for item in inputs),
        dimensions=dimensions,
        base64=encoding == "base64",
    )


def read_messages(body: dict[str, Any]) -> GenerateRequest:
    """Anthropic's ``POST /v1/messages``: ``model``, ``max_tokens`` and non-empty ``messages``
    are required; ``system`` (text or text blocks) counts towards the prompt.

    >>> read_messages({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]})
    Traceback (most recent call last):
    ...
    aivitals.mock_llm.validation.RequestError: max_tokens: Field required
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model: Field required", param="model")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise RequestError("max_tokens: Field required", param="max_tokens")
    if not _is_int(max_tokens) or max_tokens < 1:
        raise RequestError(
            f"max_tokens: Input should be an integer >= 1, got {max_tokens!r}", param="max_tokens"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: Field required (a non-empty array)", param="messages")
    tokens = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise RequestError(
                f"messages.{index}.role: Input should be 'user' or 'assistant'",
                param=f"messages.{index}.role",
            )
        tokens += _MESSAGE_OVERHEAD_TOKENS + _text_tokens(_content_chars(message.get("content")))
    system = body.get("system")
    if system is not None:
        if not isinstance(system, str | list):
            raise RequestError(
                "system: Input should be a valid string or a list of text blocks", param="system"
            )
        tokens += _text_tokens(_content_chars(system))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("stream: Input should be a valid boolean", param="stream")
    tier = body.get("service_tier")
    if tier not in (None, "auto", "standard_only"):
        raise RequestError(
            f"service_tier: Input should be 'auto' or 'standard_only', got {tier!r}",
            param="service_tier",
        )
    return GenerateRequest(
        model=model,
        prompt_tokens=max(tokens, 1),
        stream=bool(stream),
        include_usage=True,
        max_tokens=int(max_tokens),
        service_tier=tier,
    )


MIN_MAX_OUTPUT_TOKENS = 16
"""The Responses API's floor for ``max_output_tokens``."""


def read_response_request(body: dict[str, Any]) -> GenerateRequest:
    """The Responses API's ``POST /v1/responses``: ``model`` and ``input`` (text or an array of
    items); ``instructions`` counts towards the prompt."""
    model = _model(body)
    given = body.get("input")
    if given is None:
        raise _missing("input")
    if isinstance(given, str):
        tokens = _text_tokens(len(given))
    elif isinstance(given, list) and given:
        tokens = 0
        for index, item in enumerate(given):
            if not isinstance(item, dict):
                raise _wrong_type(f"input[{index}]", "an object", item)
            tokens += _MESSAGE_OVERHEAD_TOKENS + _text_tokens(_content_chars(item.get("content")))
    else:
        raise _wrong_type("input", "a string or a non-empty array of input items", given)
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _wrong_type("instructions", "a string", instructions)
        tokens += _text_tokens(len(instructions))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)
    limit = _limit(body, "max_output_tokens")
    if limit is not None and limit < MIN_MAX_OUTPUT_TOKENS:
        raise RequestError(
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_MAX_OUTPUT_TOKENS}, but got {limit} instead.",
            param="max_output_tokens",
            code="integer_below_min_value",
        )
    return GenerateRequest(
        model=model,
        prompt_tokens=max(tokens, 1),
        stream=bool(stream),
        include_usage=True,
        max_tokens=limit,
        service_tier=_service_tier(body),
    )


_OPENAI_TIERS = ("auto", "default", "flex", "scale", "priority")


def _service_tier(body: dict[str, Any]) -> str | None:
    tier = body.get("service_tier")
    if tier is not None and tier not in _OPENAI_TIERS:
        raise RequestError(
            f"Invalid value for 'service_tier': {tier!r}. Supported values are: "
            + ", ".join(f"'{name}'" for name in _OPENAI_TIERS)
            + ".",
            param="service_tier",
            code="invalid_value",
        )
    return tier if isinstance(tier, str) else None


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("you must provide a model parameter", param="model")
    return model


def _generate(body: dict[str, Any], model: str, prompt_tokens: int) -> GenerateRequest:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise _wrong_type("stream_options", "an object", options)
        usage = options.get("include_usage")
        if usage is not None and not isinstance(usage, bool):
            raise _wrong_type("stream_options.include_usage", "a boolean", usage)
        include_usage = bool(usage)
    limits = [_limit(body, name) for name in ("max_tokens", "max_completion_tokens")]
    given = [limit for limit in limits if limit is not None]
    return GenerateRequest(
        model=model,
        prompt_tokens=max(prompt_tokens, 1),
        stream=bool(stream),
        include_usage=include_usage,
        max_tokens=min(given) if given else None,
        service_tier=_service_tier(body),
    )


def _limit(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise _wrong_type(name, "an integer", value)
    if value < 1:
        raise RequestError(
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
            f"but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    return int(value)


def _inputs(body: dict[str, Any], name: str) -> list[str | list[int]]:
    """A text, a token array, or a non-empty array of either, as a list of single inputs."""
    value = body.get(name)
    if value is None:
        raise _missing(name)
    if isinstance(value, str) or (
        isinstance(value, list) and value and all(_is_int(v) for v in value)
    ):
        items: list[Any] = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        raise _wrong_type(name, "a string, an array of strings or an array of token arrays", value)
    for index, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise RequestError(
                    f"Invalid '{name}': inputs must not be empty strings.",
                    param=name,
                    code="invalid_value",
                )
        elif not (isinstance(item, list) and item and all(_is_int(v) for v in item)):
            raise _wrong_type(f"{name}[{index}]", "a string or an array of integers", item)
    return items


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # content parts: only text parts count
        return sum(
            len(part["text"])
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return 0


def _input_tokens(item: str | list[int]) -> int:
    return _text_tokens(len(item)) if isinstance(item, str) else len(item)


def _text_tokens(chars: int) -> int:
    return max(1, -(-chars // 4))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _missing(param: str) -> RequestError:
    return RequestError(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _wrong_type(param: str, expected: str, value: Any) -> RequestError:
    return RequestError(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param=param,
        code="invalid_type",
    )
