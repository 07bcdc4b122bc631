"""Error replies: OpenAI's error shape, and the injected failures that answer with a status.

Every error body is ``{"error": {"message", "type", "param", "code"}}``, as the openai client
expects; messages are the real APIs' wording, so classifiers see what production would send:

>>> reply = injected_error("rate_limit", model="gpt-4o-mini", prompt_tokens=10, chat=True)
>>> reply.status_code, reply.headers["retry-after"]
(429, '1')
>>> msgspec.json.decode(reply.body)["error"]["code"]
'rate_limit_exceeded'
"""

from __future__ import annotations

import msgspec
from starlette.responses import Response

from aivitals.mock_llm.config import ErrorKind

# Context windows for the messages of context_length; a prefix match, longest first.
_CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    ("text-embedding", 8192),
    ("claude", 200_000),
    ("o1", 200_000),
    ("o3", 200_000),
    ("o4", 200_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-5", 400_000),
)
_DEFAULT_CONTEXT_WINDOW = 128_000

MALFORMED_JSON = (
    b'{"id": "chatcmpl-mock", "object": "chat.completion", "choices": [{"index": 0, "mes'
)
"""A 200 body cut mid-object: what a broken proxy or a truncated buffer hands the client."""
MALFORMED_EVENT = b'data: {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "choi\n\n'


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON error reply in OpenAI's shape."""
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return Response(
        msgspec.json.encode(body), status, headers=headers, media_type="application/json"
    )


def context_window(model: str) -> int:
    """The context window the ``context_length`` message quotes for ``model``."""
    for prefix, window in _CONTEXT_WINDOWS:
        if model.startswith(prefix):
            return window
    return _DEFAULT_CONTEXT_WINDOW


def injected_error(
    kind: ErrorKind, *, model: str, prompt_tokens: int, chat: bool, stream: bool = False
) -> Response | None:
    """The reply that replaces a normal one for ``kind``; None for ``timeout`` and ``stream_cut``,
    which delay or cut the normal reply instead of replacing it."""
    if kind == "rate_limit":
        return error_response(
            429,
            f"Rate limit reached for {model} in organization org-aivitalsmock on requests per min "
            "(RPM): Limit 500, Used 500, Requested 1. Please try again in 1s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after": "1"},
        )
    if kind == "context_length":
        window = context_window(model)
        requested = window + max(prompt_tokens, 1)
        if chat:
            message = (
                f"This model's maximum context length is {window} tokens. However, your "
                f"messages resulted in {requested} tokens. Please reduce the length of the "
                "messages."
            )
        else:
            message = (
                f"This model's maximum context length is {window} tokens, however you requested "
                f"{requested} tokens ({requested} in your prompt; 0 for the completion). Please "
                "reduce your prompt; or completion length."
            )
        return error_response(
            400, message, param="messages" if chat else "prompt", code="context_length_exceeded"
        )
    if kind == "content_filter":
        # Azure OpenAI's wording and code; its type is null.
        return error_response(
            400,
            "The response was filtered due to the prompt triggering Azure OpenAI's content "
            "management policy. Please modify your prompt and retry. To learn more about our "
            "content filtering policies please read our documentation: "
            "https://go.microsoft.com/fwlink/?linkid=2198766",
            type=None,
            param="prompt",
            code="content_filter",
        )
    if kind == "server_error":
        return error_response(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        )
    if kind == "unavailable":
        return error_response(
            503,
            "The server is overloaded or not ready yet.",
            type="server_error",
            headers={"retry-after": "1"},
        )
    if kind == "malformed":
        return malformed_response(stream=stream)
    if kind != "auth":
        return None
    return error_response(
        401,
        "Incorrect API key provided: sk-mock***. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


def malformed_response(*, stream: bool) -> Response:
    """A 200 whose body does not parse: cut JSON, or for a stream one cut event and the end."""
    if stream:
        return Response(MALFORMED_EVENT + b"data: [DONE]\n\n", media_type="text/event-stream")
    return Response(MALFORMED_JSON, media_type="application/json")
