"""`aivitals.errors` against the real SDK exception classes and the providers' documented bodies."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import doctest
import json
import socket
from collections.abc import Callable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion

from aivitals import errors
from aivitals.errors import INVALID_RESPONSE, ErrorInfo, classify_error, classify_response
from aivitals.model import ERROR_TYPES, Call

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
FAKE_KEY = "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678"

# Error bodies in the shapes the providers document (messages abridged where marked).
OPENAI_RATE_LIMIT: dict[str, Any] = {
    "error": {
        "message": "Rate limit reached for gpt-4o in organization org-abc123 on tokens per min "
        "(TPM): Limit 30000, Used 29675, Requested 1163. Please try again in 1.676s. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
        "type": "tokens",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}
OPENAI_QUOTA: dict[str, Any] = {
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
}
OPENAI_CONTEXT: dict[str, Any] = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 153021 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
OPENAI_CONTENT_POLICY: dict[str, Any] = {
    "error": {
        "code": "content_policy_violation",
        "message": "Your request was rejected as a result of our safety system.",
        "param": None,
        "type": "invalid_request_error",
    }
}
AZURE_CONTENT_FILTER: dict[str, Any] = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
        "content management policy. Please modify your prompt and retry.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": {"filtered": True, "severity": "high"},
                "self_harm": {"filtered": False, "severity": "safe"},
                "sexual": {"filtered": False, "severity": "safe"},
                "violence": {"filtered": False, "severity": "safe"},
            },
        },
    }
}
OPENAI_BAD_KEY: dict[str, Any] = {
    "error": {
        "message": f"Incorrect API key provided: {FAKE_KEY}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
OPENAI_MODEL_NOT_FOUND: dict[str, Any] = {
    "error": {
        "message": "The model `gpt-9` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
}
OPENAI_SERVER_ERROR: dict[str, Any] = {
    "error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}
OPENAI_ENGINE_OVERLOADED: dict[str, Any] = {
    "error": {"message": "The engine is currently overloaded, please try again later."}
}
OPENAI_CONFLICT: dict[str, Any] = {"error": {"message": "Another request is in progress."}}
OPENAI_UNPROCESSABLE: dict[str, Any] = {"error": {"message": "Unprocessable entity."}}
OPENAI_BAD_GATEWAY: dict[str, Any] = {"error": {"message": "Bad gateway."}}
OPENAI_NO_ACCESS: dict[str, Any] = {
    "error": {"message": "Project `proj_abc` does not have access to model `gpt-4o`"}
}
# vLLM's OpenAI-compatible server puts the error at the top level, with a numeric code.
VLLM_CONTEXT: dict[str, Any] = {
    "object": "error",
    "message": "This model's maximum context length is 4096 tokens. However, you requested "
    "5000 tokens (4000 in the messages, 1000 in the completion).",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
}


# Gemini's OpenAI-compatible endpoint wraps its error in a list.
GEMINI_RATE_LIMIT: list[dict[str, Any]] = [
    {"error": {"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED"}}
]


def anthropic_body(kind: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": kind, "message": message},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }


ANTHROPIC_OVERLOADED = anthropic_body("overloaded_error", "Overloaded")
ANTHROPIC_RATE_LIMIT = anthropic_body(
    "rate_limit_error",
    "This request would exceed the rate limit for your organization of 50,000 input tokens per "
    "minute. Please reduce the prompt length or the maximum tokens requested, or try again later.",
)
ANTHROPIC_TOO_LONG = anthropic_body(
    "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"
)
ANTHROPIC_AUTH = anthropic_body("authentication_error", "invalid x-api-key")
ANTHROPIC_PERMISSION = anthropic_body(
    "permission_error", "Your API key does not have permission to use the specified resource."
)
ANTHROPIC_NOT_FOUND = anthropic_body("not_found_error", "model: claude-nonexistent")
ANTHROPIC_TOO_LARGE = anthropic_body(
    "request_too_large", "Request exceeds the maximum allowed number of bytes."
)
ANTHROPIC_API_ERROR = anthropic_body("api_error", "Internal server error")
ANTHROPIC_TIMEOUT = anthropic_body("timeout_error", "Request timed out")
NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n"
    b"</html>\r\n"
)

ResponseBody = bytes | str | Mapping[str, object] | None


@pytest.mark.parametrize(
    ("status", "body", "error_type"),
    [
        pytest.param(429, OPENAI_RATE_LIMIT, "rate_limit", id="openai-429-rate-limit"),
        pytest.param(429, OPENAI_QUOTA, "rate_limit", id="openai-429-insufficient-quota"),
        pytest.param(400, OPENAI_CONTEXT, "context_window_exceeded", id="openai-400-context"),
        pytest.param(400, VLLM_CONTEXT, "context_window_exceeded", id="vllm-400-context"),
        pytest.param(400, OPENAI_CONTENT_POLICY, "content_filter", id="openai-400-content-policy"),
        pytest.param(400, AZURE_CONTENT_FILTER, "content_filter", id="azure-400-content-filter"),
        pytest.param(401, OPENAI_BAD_KEY, "auth", id="openai-401-invalid-key"),
        pytest.param(404, OPENAI_MODEL_NOT_FOUND, "bad_request", id="openai-404-model"),
        pytest.param(500, OPENAI_SERVER_ERROR, "provider_down", id="openai-500-server-error"),
        pytest.param(529, ANTHROPIC_OVERLOADED, "provider_down", id="anthropic-529-overloaded"),
        pytest.param(429, ANTHROPIC_RATE_LIMIT, "rate_limit", id="anthropic-429-rate-limit"),
        pytest.param(
            400, ANTHROPIC_TOO_LONG, "context_window_exceeded", id="anthropic-400-too-long"
        ),
        pytest.param(401, ANTHROPIC_AUTH, "auth", id="anthropic-401-auth"),
        pytest.param(403, ANTHROPIC_PERMISSION, "auth", id="anthropic-403-permission"),
        pytest.param(404, ANTHROPIC_NOT_FOUND, "bad_request", id="anthropic-404-not-found"),
        pytest.param(413, ANTHROPIC_TOO_LARGE, "bad_request", id="anthropic-413-too-large"),
        pytest.param(500, ANTHROPIC_API_ERROR, "provider_down", id="anthropic-500-api-error"),
        pytest.param(502, NGINX_502, "provider_down", id="html-502"),
        pytest.param(503, b"", "provider_down", id="empty-503"),
        pytest.param(504, None, "timeout", id="none-504"),
        pytest.param(408, b"", "timeout", id="empty-408"),
        pytest.param(409, b"{}", "bad_request", id="empty-json-409"),
        pytest.param(422, b"[1, 2]", "bad_request", id="odd-json-422"),
        pytest.param(599, b"", "provider_down", id="other-5xx"),
        pytest.param(429, GEMINI_RATE_LIMIT, "rate_limit", id="gemini-openai-compat-429"),
        pytest.param(404, {"error": "model 'llama9' not found"}, "bad_request", id="ollama-404"),
        pytest.param(
            400,
            {"error": {"message": "Invalid value at 'safety_settings[0].threshold'", "code": 400}},
            "bad_request",
            id="gemini-safety-settings-is-not-a-refusal",
        ),
    ],
)
def test_classify_response(status: int, body: object, error_type: str) -> None:
    raw = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    info = classify_response(status, raw)
    assert info is not None
    assert (info.error_type, info.http_status) == (error_type, status)
    assert info.message
    # Every result fits a Call as it is.
    Call(
        provider="openai",
        model="gpt-4o",
        latency_ms=1.0,
        status="error",
        error_type=info.error_type,
        http_status=info.http_status,
        error_message=info.message,
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(json.dumps(ANTHROPIC_OVERLOADED).encode(), id="bytes"),
        pytest.param(json.dumps(ANTHROPIC_OVERLOADED), id="str"),
        pytest.param(ANTHROPIC_OVERLOADED, id="mapping"),
    ],
)
def test_classify_response_accepts_each_body_form(body: ResponseBody) -> None:
    assert classify_response(529, body) == ErrorInfo("provider_down", 529, "Overloaded")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(200, b'{"id": "chatcmpl-1"}', id="200-json"),
        pytest.param(200, b"<html>oops</html>", id="200-not-json"),
        pytest.param(204, None, id="204-empty"),
        pytest.param(304, b"", id="304"),
    ],
)
def test_classify_response_leaves_success_alone(status: int, body: ResponseBody) -> None:
    assert classify_response(status, body) is None


def test_invalid_response_is_recorded_with_its_status() -> None:
    info = dataclasses.replace(INVALID_RESPONSE, http_status=200)
    assert (info.error_type, info.http_status) == ("invalid_response", 200)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        pytest.param(502, NGINX_502, "502 Bad Gateway 502 Bad Gateway nginx", id="html-tags-gone"),
        pytest.param(503, b"", "HTTP 503 Service Unavailable", id="empty-names-the-status"),
        pytest.param(529, None, "HTTP 529", id="non-standard-status"),
        pytest.param(429, OPENAI_QUOTA, OPENAI_QUOTA["error"]["message"], id="api-message"),
        pytest.param(400, {"error": {"message": " \n"}}, "HTTP 400 Bad Request", id="blank"),
        pytest.param(HTTPStatus.BAD_GATEWAY, b"", "HTTP 502 Bad Gateway", id="http-status-enum"),
    ],
)
def test_classify_response_message(status: int, body: ResponseBody, message: str) -> None:
    info = classify_response(status, body)
    assert info is not None
    assert info.message == message
    assert type(info.http_status) is int


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"Incorrect API key provided: {FAKE_KEY}.", id="openai-key"),
        pytest.param("bad key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv-wxyz", id="anthropic-key"),
        pytest.param("upstream said: Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.x-y", id="bearer"),
        pytest.param(
            "GET /v1beta/models?key=AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW", id="url-key"
        ),
        pytest.param('config {"api_key": "abc123secretvalue"} rejected', id="json-api-key"),
    ],
)
def test_secrets_are_redacted(text: str) -> None:
    info = classify_response(401, {"error": {"message": text}})
    assert info is not None
    assert "***" in info.message
    for secret in (FAKE_KEY[8:], "AbCdEfGhIj", "eyJhbGciOi", "SyA1b2C3d4", "abc123secret"):
        assert secret not in info.message


def test_messages_are_one_short_line() -> None:
    text = f"line one {FAKE_KEY}\n" + "x" * 5000
    info = classify_error(ValueError(text))
    assert len(info.message) <= errors.MAX_MESSAGE_CHARS
    assert "\n" not in info.message
    assert info.message.startswith("ValueError: line one sk-*** xxx")


oa_request = httpx2.Request("POST", OPENAI_URL)
an_request = httpx2.Request("POST", ANTHROPIC_URL)
hx_request = httpx.Request("POST", OPENAI_URL)


def openai_error(
    cls: type[openai.APIStatusError], status: int, body: Mapping[str, Any]
) -> openai.APIStatusError:
    """Built as openai's client builds it: ``.body`` keeps only the inner error object."""
    response = httpx2.Response(status, request=httpx2.Request("POST", OPENAI_URL), json=body)
    inner = body.get("error", body)
    return cls(f"Error code: {status} - {inner['message']}", response=response, body=inner)


def anthropic_error(
    cls: type[anthropic.APIStatusError], status: int, body: Mapping[str, Any]
) -> anthropic.APIStatusError:
    """Built as anthropic's client builds it: ``.body`` is the whole decoded body."""
    response = httpx2.Response(status, request=httpx2.Request("POST", ANTHROPIC_URL), json=body)
    return cls(f"Error code: {status} - {body}", response=response, body=body)


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as err:
            raise outer from err
    except BaseException as wrapped:
        return wrapped


def cyclic() -> BaseException:
    first, second = RuntimeError("first"), RuntimeError("second")
    first.__cause__, second.__cause__ = second, first
    return first


def deep(depth: int, cause: BaseException) -> BaseException:
    for level in range(depth):
        cause = chained(RuntimeError(f"level {level}"), cause)
    return cause


def completion(finish_reason: str) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "gpt-4o",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish_reason,
                    "message": {"role": "assistant", "content": '{"answer": '},
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 64, "total_tokens": 76},
        }
    )


def httpx_status_error() -> BaseException:
    response = httpx.Response(429, request=hx_request, json=OPENAI_RATE_LIMIT)
    with pytest.raises(httpx.HTTPStatusError) as caught:
        response.raise_for_status()
    return caught.value


def httpx2_status_error() -> BaseException:
    response = httpx2.Response(429, request=oa_request, json=OPENAI_RATE_LIMIT)
    with pytest.raises(httpx2.HTTPStatusError) as caught:
        response.raise_for_status()
    return caught.value


def json_error() -> BaseException:
    with pytest.raises(json.JSONDecodeError) as caught:
        json.loads("<html>")
    return caught.value


REFUSED = "[Errno 111] Connection refused"
RESET = "[Errno 104] Connection reset by peer"
HANG_UP = "Server disconnected without sending a response."


def finish_length_error() -> BaseException:
    return openai.LengthFinishReasonError(completion=completion("length"))


def openai_validation_error() -> BaseException:
    response = httpx2.Response(200, request=oa_request, json={"id": 1})
    return openai.APIResponseValidationError(response, {"id": 1})


def anthropic_validation_error() -> BaseException:
    response = httpx2.Response(200, request=an_request, json={})
    return anthropic.APIResponseValidationError(response, {})


def openai_stream_error() -> BaseException:
    inner = OPENAI_SERVER_ERROR["error"]
    return openai.APIError(inner["message"], oa_request, body=inner)


def chained_rate_limit() -> BaseException:
    cause = openai_error(openai.RateLimitError, 429, OPENAI_RATE_LIMIT)
    return chained(RuntimeError("summary failed"), cause)


def task_group_error() -> BaseException:
    return ExceptionGroup("tasks failed", [ValueError("x"), httpx.ReadTimeout("slow")])


class BrokenStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


CTX = "context_window_exceeded"


def sdk_case(
    cls: type[Exception], status: int, body: object, error_type: str, note: str = ""
) -> Any:
    """A case named for the SDK class and status it exercises, e.g. ``BadRequestError-400-vllm``."""
    name = f"{cls.__module__.split('.')[0]}-{cls.__name__}-{status}" + (f"-{note}" if note else "")
    return pytest.param(cls, status, body, error_type, id=name)


@pytest.mark.parametrize(
    ("cls", "status", "body", "error_type"),
    [
        sdk_case(openai.RateLimitError, 429, OPENAI_RATE_LIMIT, "rate_limit"),
        sdk_case(openai.BadRequestError, 400, OPENAI_CONTEXT, CTX, "context-code"),
        sdk_case(openai.BadRequestError, 400, VLLM_CONTEXT, CTX, "vllm-context-message"),
        sdk_case(openai.BadRequestError, 400, AZURE_CONTENT_FILTER, "content_filter", "azure"),
        sdk_case(openai.BadRequestError, 400, OPENAI_CONTENT_POLICY, "content_filter", "policy"),
        sdk_case(openai.AuthenticationError, 401, OPENAI_BAD_KEY, "auth"),
        sdk_case(openai.PermissionDeniedError, 403, OPENAI_NO_ACCESS, "auth"),
        sdk_case(openai.NotFoundError, 404, OPENAI_MODEL_NOT_FOUND, "bad_request"),
        sdk_case(openai.ConflictError, 409, OPENAI_CONFLICT, "bad_request"),
        sdk_case(openai.UnprocessableEntityError, 422, OPENAI_UNPROCESSABLE, "bad_request"),
        sdk_case(openai.InternalServerError, 500, OPENAI_SERVER_ERROR, "provider_down"),
        sdk_case(openai.InternalServerError, 502, OPENAI_BAD_GATEWAY, "provider_down"),
        sdk_case(openai.InternalServerError, 503, OPENAI_ENGINE_OVERLOADED, "provider_down"),
    ],
)
def test_openai_status_errors(
    cls: type[openai.APIStatusError], status: int, body: Mapping[str, Any], error_type: str
) -> None:
    info = classify_error(openai_error(cls, status, body))
    assert (info.error_type, info.http_status) == (error_type, status)


@pytest.mark.parametrize(
    ("cls", "status", "body", "error_type"),
    [
        sdk_case(anthropic.RateLimitError, 429, ANTHROPIC_RATE_LIMIT, "rate_limit"),
        sdk_case(anthropic.OverloadedError, 529, ANTHROPIC_OVERLOADED, "provider_down"),
        sdk_case(anthropic.BadRequestError, 400, ANTHROPIC_TOO_LONG, CTX, "prompt-too-long"),
        sdk_case(anthropic.AuthenticationError, 401, ANTHROPIC_AUTH, "auth"),
        sdk_case(anthropic.PermissionDeniedError, 403, ANTHROPIC_PERMISSION, "auth"),
        sdk_case(anthropic.NotFoundError, 404, ANTHROPIC_NOT_FOUND, "bad_request"),
        sdk_case(anthropic.ContentTooLargeError, 413, ANTHROPIC_TOO_LARGE, "bad_request"),
        sdk_case(anthropic.InternalServerError, 500, ANTHROPIC_API_ERROR, "provider_down"),
        sdk_case(anthropic.ServiceUnavailableError, 503, ANTHROPIC_API_ERROR, "provider_down"),
        sdk_case(anthropic.GatewayTimeoutError, 504, ANTHROPIC_TIMEOUT, "timeout"),
        sdk_case(anthropic.RequestTimeoutError, 408, ANTHROPIC_TIMEOUT, "timeout"),
        # An error event inside a stream arrives as a plain APIStatusError carrying the 200.
        sdk_case(anthropic.APIStatusError, 200, ANTHROPIC_OVERLOADED, "provider_down", "stream"),
    ],
)
def test_anthropic_status_errors(
    cls: type[anthropic.APIStatusError], status: int, body: Mapping[str, Any], error_type: str
) -> None:
    info = classify_error(anthropic_error(cls, status, body))
    assert (info.error_type, info.http_status) == (error_type, status)


# Each case builds its exception when it runs; the name says where it comes from.
OTHER_CASES = [
    pytest.param(openai.ContentFilterFinishReasonError, "content_filter", None, id="openai-filter"),
    pytest.param(finish_length_error, "invalid_response", None, id="openai-length"),
    pytest.param(openai_validation_error, "invalid_response", 200, id="openai-validation"),
    pytest.param(lambda: openai.APITimeoutError(oa_request), "timeout", None, id="openai-timeout"),
    pytest.param(
        lambda: openai.APIConnectionError(request=oa_request),
        "provider_down",
        None,
        id="openai-conn",
    ),
    # openai raises a bare APIError, with no status, for an error event inside a stream.
    pytest.param(openai_stream_error, "provider_down", None, id="openai-stream-error"),
    pytest.param(anthropic_validation_error, "invalid_response", 200, id="anthropic-validation"),
    pytest.param(lambda: anthropic.APITimeoutError(an_request), "timeout", None, id="anth-timeout"),
    pytest.param(
        lambda: anthropic.APIConnectionError(request=an_request),
        "provider_down",
        None,
        id="anth-conn",
    ),
    pytest.param(lambda: anthropic.CredentialsError("no key"), "auth", None, id="anth-credentials"),
    pytest.param(lambda: httpx.ReadTimeout("timed out"), "timeout", None, id="httpx-read-timeout"),
    pytest.param(
        lambda: httpx.ConnectTimeout("timed out"), "timeout", None, id="httpx-conn-timeout"
    ),
    pytest.param(lambda: httpx.ConnectError(REFUSED), "provider_down", None, id="httpx-conn-error"),
    pytest.param(
        lambda: httpx.RemoteProtocolError(HANG_UP), "provider_down", None, id="httpx-hang-up"
    ),
    pytest.param(
        lambda: httpx.LocalProtocolError("Illegal header"), "other", None, id="httpx-local"
    ),
    pytest.param(httpx_status_error, "rate_limit", 429, id="httpx-raise-for-status"),
    pytest.param(
        lambda: httpx2.ReadTimeout("timed out"), "timeout", None, id="httpx2-read-timeout"
    ),
    pytest.param(
        lambda: httpx2.ConnectError(REFUSED), "provider_down", None, id="httpx2-conn-error"
    ),
    pytest.param(lambda: httpx2.ReadError(RESET), "provider_down", None, id="httpx2-read-error"),
    pytest.param(httpx2_status_error, "rate_limit", 429, id="httpx2-raise-for-status"),
    pytest.param(TimeoutError, "timeout", None, id="builtin-timeout"),
    # Aliases of TimeoutError since 3.11, listed because they are what callers catch.
    pytest.param(asyncio.TimeoutError, "timeout", None, id="asyncio-timeout"),
    pytest.param(socket.timeout, "timeout", None, id="socket-timeout"),
    pytest.param(lambda: ConnectionRefusedError(111, REFUSED), "provider_down", None, id="refused"),
    pytest.param(lambda: ConnectionResetError(104, RESET), "provider_down", None, id="reset"),
    pytest.param(json_error, "invalid_response", None, id="json-decode"),
    pytest.param(lambda: ValueError("boom"), "other", None, id="value-error"),
    pytest.param(asyncio.CancelledError, "other", None, id="cancelled"),
    pytest.param(BrokenStr, "other", None, id="broken-str"),
    pytest.param(chained_rate_limit, "rate_limit", 429, id="chained-rate-limit"),
    pytest.param(
        lambda: chained(RuntimeError("outer"), ValueError("inner")),
        "other",
        None,
        id="chained-generic",
    ),
    pytest.param(lambda: deep(4, TimeoutError()), "timeout", None, id="chain-within-depth"),
    pytest.param(lambda: deep(9, TimeoutError()), "other", None, id="chain-beyond-depth"),
    pytest.param(cyclic, "other", None, id="chain-cycle"),
    pytest.param(task_group_error, "timeout", None, id="exception-group"),
]


@pytest.mark.parametrize(("make", "error_type", "http_status"), OTHER_CASES)
def test_classify_error(
    make: Callable[[], BaseException], error_type: str, http_status: int | None
) -> None:
    info = classify_error(make())
    assert (info.error_type, info.http_status) == (error_type, http_status)
    assert info.message
    assert len(info.message) <= errors.MAX_MESSAGE_CHARS


def test_classify_error_prefers_the_api_message_and_redacts() -> None:
    info = classify_error(openai_error(openai.AuthenticationError, 401, OPENAI_BAD_KEY))
    assert info.message.startswith("AuthenticationError: Incorrect API key provided: sk-***.")
    assert FAKE_KEY not in info.message
    overloaded = classify_error(
        anthropic_error(anthropic.OverloadedError, 529, ANTHROPIC_OVERLOADED)
    )
    assert overloaded.message == "OverloadedError: Overloaded"


def test_a_chain_reports_the_informative_cause() -> None:
    cause = openai_error(openai.RateLimitError, 429, OPENAI_RATE_LIMIT)
    info = classify_error(chained(RuntimeError("summary failed"), cause))
    assert info == classify_error(cause)


def test_optional_sdks_are_not_imported() -> None:
    # Read the source rather than sys.modules: the rest of the package may import httpx2.
    tree = ast.parse(Path(errors.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    roots = {name.split(".")[0] for name in imported}
    assert roots.isdisjoint({"openai", "anthropic", "httpx", "httpx2"})


def client_over(status: int, body: bytes, content_type: str = "application/json") -> httpx2.Client:
    def reply(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, content=body, headers={"content-type": content_type})

    return httpx2.Client(transport=httpx2.MockTransport(reply))


def raised_by_openai(http_client: httpx2.Client) -> BaseException:
    client = openai.OpenAI(api_key="sk-test", max_retries=0, http_client=http_client)
    with pytest.raises(openai.OpenAIError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    return caught.value


def raised_by_anthropic(http_client: httpx2.Client) -> BaseException:
    client = anthropic.Anthropic(api_key="sk-ant-test", max_retries=0, http_client=http_client)
    with (
        pytest.raises(anthropic.AnthropicError) as caught,
        client.messages.stream(
            model="claude-test-model", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        for _ in stream:
            pass
    return caught.value


def encoded(body: object) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("raise_from", "status", "body"),
    [
        pytest.param(raised_by_openai, 429, encoded(OPENAI_RATE_LIMIT), id="openai-429"),
        pytest.param(raised_by_openai, 400, encoded(OPENAI_CONTEXT), id="openai-context"),
        pytest.param(raised_by_openai, 400, encoded(AZURE_CONTENT_FILTER), id="azure-filter"),
        pytest.param(raised_by_openai, 502, NGINX_502, id="openai-502-html"),
        pytest.param(raised_by_anthropic, 529, encoded(ANTHROPIC_OVERLOADED), id="anthropic-529"),
        pytest.param(
            raised_by_anthropic, 400, encoded(ANTHROPIC_TOO_LONG), id="anthropic-too-long"
        ),
        pytest.param(raised_by_anthropic, 502, NGINX_502, id="anthropic-502-html"),
    ],
)
def test_the_real_clients_agree_with_classify_response(
    raise_from: Callable[[httpx2.Client], BaseException], status: int, body: bytes
) -> None:
    """The SDKs raise from a reply; classifying the exception or the reply gives the same answer."""
    from_reply = classify_response(status, body)
    assert from_reply is not None
    from_exception = classify_error(raise_from(client_over(status, body)))
    assert from_exception.error_type == from_reply.error_type
    assert from_exception.http_status == status
    assert from_exception.message.endswith(from_reply.message)


def test_an_error_event_inside_an_anthropic_stream() -> None:
    event = f"event: error\ndata: {json.dumps(ANTHROPIC_OVERLOADED)}\n\n".encode()
    exc = raised_by_anthropic(client_over(200, event, "text/event-stream"))
    assert classify_error(exc) == ErrorInfo("provider_down", 200, "APIStatusError: Overloaded")


def test_a_transport_timeout_through_the_openai_client() -> None:
    def time_out(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    exc = raised_by_openai(httpx2.Client(transport=httpx2.MockTransport(time_out)))
    assert classify_error(exc).error_type == "timeout"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
error_objects = st.fixed_dictionaries(
    {},
    optional={
        "message": json_values,
        "type": json_values,
        "code": json_values,
        "param": json_values,
    },
)
bodies = st.one_of(
    st.binary(),
    st.text().map(str.encode),
    json_values.map(lambda value: json.dumps(value).encode()),
    error_objects.map(lambda error: json.dumps({"error": error}).encode()),
    error_objects.map(lambda error: json.dumps({"type": "error", "error": error}).encode()),
)


@given(status=st.integers(min_value=400, max_value=599), body=bodies)
def test_any_error_reply_classifies_without_raising(status: int, body: bytes) -> None:
    info = classify_response(status, body)
    assert info is not None
    assert info.error_type in ERROR_TYPES
    assert info.http_status == status
    assert 0 < len(info.message) <= errors.MAX_MESSAGE_CHARS
    assert "\n" not in info.message


def test_docstring_examples() -> None:
    result = doctest.testmod(errors)
    assert result.attempted > 0
    assert result.failed == 0
