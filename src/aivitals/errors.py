"""One place that turns "what went wrong" into an `ErrorType`, from an exception or an HTTP reply.

`classify_error` reads exceptions by duck typing (class names along the MRO; attributes such as
``status_code``, ``body``, ``code``, ``type``, ``response``): openai, anthropic and httpx stay
optional and are never imported here. `classify_response` reads an OpenAI-compatible or
Anthropic-style reply, for the gateway. Precedence, most trusted first:

1. a decisive class name (``APITimeoutError``, ``ContentFilterFinishReasonError``, ...);
2. an error HTTP status, a bad request refined by the body's code, type or message into
   ``context_window_exceeded`` or ``content_filter``;
3. with no error status (an error event inside a 200 stream), the provider's error code or type;
4. for an exception still unexplained, its ``__cause__`` or group members, a few levels deep.

Messages are one line, at most 300 characters, with anything that looks like a credential
(``sk-...``, ``Bearer ...``, ``?key=...``, ``api_key: ...``) replaced by ``***``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus

from aivitals.model import ErrorType

MAX_MESSAGE_CHARS = 300
_MAX_SCANNED_CHARS = 2000  # secrets are redacted in this prefix, then it is cut to 300
_MAX_CAUSE_DEPTH = 4


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What went wrong: the error type, the HTTP status if there was one, and a short message."""

    error_type: ErrorType
    http_status: int | None
    message: str


INVALID_RESPONSE = ErrorInfo("invalid_response", None, "response body is not valid JSON")
"""For a 2xx reply whose body cannot be parsed, which `classify_response` leaves alone (it returns
``None`` for every 2xx). Record it with its status: ``dataclasses.replace(INVALID_RESPONSE,
http_status=200)``."""

# Checked along type(exc).__mro__, most specific class first; these win over any status code.
_BY_CLASS_NAME: dict[str, ErrorType] = {
    # openai/anthropic: a 2xx body that does not match the SDK's schema.
    "APIResponseValidationError": "invalid_response",
    # openai's .parse() helpers: the model stopped on the content filter.
    "ContentFilterFinishReasonError": "content_filter",
    # openai's .parse() helpers: output cut at max_tokens, so the structured answer cannot be
    # parsed. That is an unusable response, not an overflowing context window (the limit is
    # usually the caller's max_tokens) and not an outage.
    "LengthFinishReasonError": "invalid_response",
    # Stainless SDKs wrap every httpx timeout in APITimeoutError (a subclass of the next one).
    "APITimeoutError": "timeout",
    # No answer at all: refused, reset, DNS or TLS failure. From where we stand, the provider is
    # unreachable; ErrorType has no separate "our network" bucket.
    "APIConnectionError": "provider_down",
    "OverloadedError": "provider_down",
    # Credentials missing or unloadable before any request was sent.
    "CredentialsError": "auth",
    "SubjectTokenProviderError": "auth",
    # httpx and httpx2 share these names. LocalProtocolError means we sent bad HTTP.
    "TimeoutException": "timeout",
    "ConnectTimeout": "timeout",  # before ConnectionError in requests' MRO
    "Timeout": "timeout",  # requests
    "NetworkError": "provider_down",
    "LocalProtocolError": "other",
    "ProtocolError": "provider_down",
    "ProxyError": "provider_down",
    "DecodingError": "invalid_response",
    # aiohttp: its timeouts are also connection errors, so they are named first in the MRO;
    # then refused, reset, disconnected; a body (a stream) cut short.
    "ServerTimeoutError": "timeout",
    "ConnectionTimeoutError": "timeout",
    "ClientConnectionError": "provider_down",
    "ClientPayloadError": "provider_down",
    # Builtins: asyncio.TimeoutError and socket.timeout are aliases of TimeoutError since 3.11.
    "TimeoutError": "timeout",
    "ConnectionError": "provider_down",
    "JSONDecodeError": "invalid_response",
}

# Error statuses with a meaning of their own; other 4xx are bad_request, other 5xx provider_down.
_BY_STATUS: dict[int, ErrorType] = {
    401: "auth",
    403: "auth",
    408: "timeout",
    429: "rate_limit",
    504: "timeout",
    529: "provider_down",  # Anthropic's "overloaded"
}

# Providers' error codes and types (OpenAI's error.code / error.type, Anthropic's error.type),
# lower-cased. They decide when there is no error status, and refine a bad_request.
_BY_CODE: dict[str, ErrorType] = {
    "context_length_exceeded": "context_window_exceeded",
    "content_filter": "content_filter",  # Azure OpenAI
    "content_policy_violation": "content_filter",  # OpenAI images and moderation
    "rate_limit_exceeded": "rate_limit",
    "rate_limit_error": "rate_limit",
    # Out of credit is not transient, but it is the provider refusing volume; ErrorType has no
    # "quota" bucket, and the 429 it arrives with says rate_limit anyway.
    "insufficient_quota": "rate_limit",
    "invalid_api_key": "auth",
    "authentication_error": "auth",
    "permission_error": "auth",
    "overloaded_error": "provider_down",
    "api_error": "provider_down",
    "server_error": "provider_down",
    "timeout_error": "timeout",
    "invalid_request_error": "bad_request",
    "not_found_error": "bad_request",
    "request_too_large": "bad_request",  # 32 MB of bytes, not tokens: not the context window
    "billing_error": "bad_request",
}

_REFINEMENTS: frozenset[ErrorType] = frozenset({"context_window_exceeded", "content_filter"})

# Wording seen in messages whose code says no more than "invalid request" (Anthropic's always).
_CONTEXT_WINDOW_WORDS = re.compile(
    r"context_length_exceeded|maximum context length|prompt is too long|too many tokens"
    r"|context window|exceeds? (?:the )?context limit|input is too long"
)
# \b keeps "safety_settings" (a Gemini parameter name) from reading as a refusal.
_CONTENT_FILTER_WORDS = re.compile(
    r"content_filter|content_policy_violation|content management policy|\bsafety\b"
)

_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}"), "sk-***"),  # OpenAI and Anthropic keys
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), "AIza***"),  # Google API keys
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]+"), "Bearer ***"),
    (re.compile(r"(?i)([?&](?:key|api[-_]?key|token|access_token)=)[^&\s\"']+"), r"\1***"),
    (re.compile(r"(?i)\b((?:x-)?api[-_]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"), r"\1***"),
)
_TAG = re.compile(r"<[^>]*>")


def classify_error(exc: BaseException) -> ErrorInfo:
    """Classify an exception raised by an LLM call. Never raises.

    >>> classify_error(TimeoutError("read timed out"))
    ErrorInfo(error_type='timeout', http_status=None, message='TimeoutError: read timed out')

    An unexplained wrapper defers to its ``__cause__``:

    >>> try:
    ...     try:
    ...         raise ConnectionRefusedError(111, "Connection refused")
    ...     except OSError as err:
    ...         raise RuntimeError("summary failed") from err
    ... except RuntimeError as wrapped:
    ...     classify_error(wrapped).error_type
    'provider_down'
    """
    outer = _classify_one(exc)
    if outer.error_type != "other":
        return outer
    frontier = _inner_exceptions(exc)
    for _ in range(_MAX_CAUSE_DEPTH):
        deeper: list[BaseException] = []
        for inner in frontier:
            info = _classify_one(inner)
            if info.error_type != "other":
                return info
            deeper.extend(_inner_exceptions(inner))
        frontier = deeper[:8]  # cycles and wide groups stay bounded
    return outer


def classify_response(
    status: int, body: bytes | str | Mapping[str, object] | None
) -> ErrorInfo | None:
    """Classify an HTTP reply from an OpenAI-compatible or Anthropic-style API; None unless >= 400.

    >>> body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    >>> classify_response(529, body)
    ErrorInfo(error_type='provider_down', http_status=529, message='Overloaded')
    >>> classify_response(200, b"not json") is None
    True

    The body may be bytes, text, already-decoded JSON, or None; text that is not JSON (an HTML
    page from a load balancer) becomes the message. A 2xx body that does not parse is the caller's
    to record, as `INVALID_RESPONSE`.
    """
    if status < 400:
        return None
    status = int(status)  # an HTTPStatus member would fail Call's check on http_status
    data = _parse_json(body)
    code, kind, api_message = _error_fields(data)
    error_type = _classify_fields(status, code, kind, api_message) or "other"
    message = api_message or (_plain_text(body) if data is None else "") or _status_phrase(status)
    return ErrorInfo(error_type, status if status <= 599 else None, _short(message))


def classify_error_name(
    name: str, message: str = "", *, http_status: int | None = None
) -> ErrorInfo:
    """Classify an error known only by its exception class name, or a provider's error code, as a
    trace span's ``error.type`` carries it; the message and status refine it as for an exception.

    >>> classify_error_name("APITimeoutError").error_type
    'timeout'
    >>> classify_error_name("BadRequestError", "maximum context length is 128000", http_status=400)
    ErrorInfo(error_type='context_window_exceeded', http_status=400, message='BadRequestError: maximum context length is 128000')
    """
    error_type = _BY_CLASS_NAME.get(name)
    error_type = error_type or _classify_fields(http_status, name.lower(), "", message) or "other"
    text = f"{name}: {message}" if name and message else name or message or "error"
    return ErrorInfo(error_type, http_status, _short(text))


def _classify_one(exc: BaseException) -> ErrorInfo:
    status = _status_of(exc)
    body = _attr(exc, "body")
    if body is None:  # httpx's HTTPStatusError carries only the response
        body = _attr(_attr(exc, "response"), "text")
    data = _parse_json(body)
    code, kind, api_message = _error_fields(data)
    code = code or _lower_str(_attr(exc, "code"))
    kind = kind or _lower_str(_attr(exc, "type"))
    detail = api_message or (_plain_text(body) if data is None else "") or _safe_str(exc)
    names = (cls.__name__ for cls in type(exc).__mro__)
    error_type = next((_BY_CLASS_NAME[n] for n in names if n in _BY_CLASS_NAME), None)
    error_type = error_type or _classify_fields(status, code, kind, detail) or "other"
    name = type(exc).__name__
    return ErrorInfo(error_type, status, _short(f"{name}: {detail}" if detail else name))


def _classify_fields(status: int | None, code: str, kind: str, message: str) -> ErrorType | None:
    if status is not None and status >= 400:
        if status in _BY_STATUS:
            error_type: ErrorType | None = _BY_STATUS[status]
        elif status < 500:
            error_type = "bad_request"
        else:
            error_type = "provider_down" if status < 600 else "other"
    else:
        # No error status (an error event inside a 200 stream): trust the provider's own words.
        error_type = _BY_CODE.get(code) or _BY_CODE.get(kind)
    if error_type == "bad_request":
        for hint in (_BY_CODE.get(code), _BY_CODE.get(kind), _phrase_hint(message)):
            if hint in _REFINEMENTS:
                return hint
    return error_type


def _phrase_hint(message: str) -> ErrorType | None:
    lowered = message[:_MAX_SCANNED_CHARS].lower()
    if _CONTEXT_WINDOW_WORDS.search(lowered):
        return "context_window_exceeded"
    return "content_filter" if _CONTENT_FILTER_WORDS.search(lowered) else None


def _error_fields(data: object) -> tuple[str, str, str]:
    """The (code, type, message) of an error body, each "" when absent; codes lower-cased.

    Reads OpenAI's ``{"error": {...}}``, Anthropic's ``{"type": "error", "error": {...}}``, the
    inner object alone (openai's exceptions keep only that as ``.body``), Ollama's
    ``{"error": "text"}`` and Gemini's OpenAI-compatible ``[{"error": {...}}]``.
    """
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, Mapping):
        return "", "", ""
    inner = data.get("error")
    if isinstance(inner, str):
        return "", "", inner.strip()
    if isinstance(inner, Mapping):
        data = inner
    message = next((v for k in ("message", "detail") if isinstance(v := data.get(k), str)), "")
    return _lower_str(data.get("code")), _lower_str(data.get("type")), message.strip()


def _parse_json(body: object) -> object:
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8-sig", errors="replace")
    if not isinstance(body, str):
        return body
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or JSON nested deeper than the stack
        return None


def _plain_text(body: object) -> str:
    """A body that is not JSON, such as a load balancer's HTML page, as text without tags."""
    if isinstance(body, bytes | bytearray):
        body = bytes(body[:_MAX_SCANNED_CHARS]).decode("utf-8", errors="replace")
    return _TAG.sub(" ", body[:_MAX_SCANNED_CHARS]).strip() if isinstance(body, str) else ""


def _status_phrase(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:  # 529 and friends are not in the standard registry
        return f"HTTP {status}"


def _status_of(exc: BaseException) -> int | None:
    # status_code: Stainless SDKs, requests-style; status: aiohttp; code: google-genai.
    candidates = (
        _attr(exc, "status_code"),
        _attr(exc, "status"),
        _attr(exc, "code"),
        _attr(_attr(exc, "response"), "status_code"),
    )
    for value in candidates:
        # isinstance admits IntEnum (HTTPStatus); int() hands on a plain int, as Call requires.
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return int(value)
    return None


def _inner_exceptions(exc: BaseException) -> list[BaseException]:
    inner = [exc.__cause__] if exc.__cause__ is not None else []
    if isinstance(exc, BaseExceptionGroup):
        inner.extend(exc.exceptions)
    return inner


def _attr(obj: object, name: str) -> object:
    """getattr that also survives properties that raise (httpx's unread ``Response.text``)."""
    if obj is None:
        return None
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _lower_str(value: object) -> str:
    """A code or type as lower-case text; Gemini's codes are numbers."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return str(value).lower()


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc).strip()
    except Exception:  # a broken __str__ must not break error recording
        return ""


def _short(text: str) -> str:
    """One line, secrets redacted, at most MAX_MESSAGE_CHARS characters."""
    line = " ".join(text[:_MAX_SCANNED_CHARS].split())
    for pattern, replacement in _SECRETS:
        line = pattern.sub(replacement, line)
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 1] + "…"
    return line
