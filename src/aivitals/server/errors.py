"""Every error the API answers, in one shape: ``{"error": "message", "fields": [...]}``.

``fields`` is there only on a 422 and names each bad field by its dotted path in the body
(``calls.3.latency_ms``) or the query parameter (``query.limit``). A body that is not JSON at all
is a 400. Nothing here echoes the input back: it may be large, or hold what should not be logged.

>>> field_path(("body", "batch", "calls", 3, "latency_ms"))
'calls.3.latency_ms'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from aivitals.server.encoding import JsonResponse
from aivitals.server.models import BATCH_TAGS


class ApiError(Exception):
    """Raised by a route to answer ``status`` with ``message`` (and optional headers)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        fields: Sequence[dict[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = list(fields)
        self.headers = headers


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a dotted path, without ``body`` and the union tag."""
    parts = list(loc)
    if parts and parts[0] == "body":
        parts = parts[1:]
        # Only the one-or-batch unions put a tag here; no body model has a field of that name.
        if parts and parts[0] in BATCH_TAGS:
            parts = parts[1:]
    return ".".join(_shown(part) for part in parts) or "body"


_MAX_PART_CHARS = 64


def _shown(part: int | str) -> str:
    # A location can hold a key the client sent (an unknown field's name): cut it short and
    # escape what UTF-8 cannot carry (a lone surrogate), so the 422 stays small and valid.
    text = str(part)
    if len(text) > _MAX_PART_CHARS:
        text = text[:_MAX_PART_CHARS] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def bad_field(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def error_response(error: ApiError) -> Response:
    body: dict[str, Any] = {"error": error.message}
    if error.fields:
        body["fields"] = error.fields
    return JsonResponse(body, status_code=error.status, headers=error.headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    for error in errors:
        if error.get("type") == "json_invalid":
            where = error["loc"][-1]
            reason = (error.get("ctx") or {}).get("error", "cannot parse it")
            return error_response(
                ApiError(400, f"the body is not valid JSON: {reason} (at character {where})")
            )
    fields = [bad_field(field_path(error["loc"]), error["msg"]) for error in errors]
    _count_refused_ingest(request, exc.body)
    named = ", ".join(dict.fromkeys(item["field"] for item in fields))
    return error_response(ApiError(422, f"invalid request: {named}", fields=fields))


def _count_refused_ingest(request: Request, body: object) -> None:
    # A body the ingest models refuse never reaches its route: count its items here.
    path = request.url.path
    kind = path.removeprefix("/api/v1/")
    context = getattr(request.app.state, "context", None)
    if kind not in ("calls", "scores") or context is None:
        return
    batch = body.get(kind) if isinstance(body, dict) else None
    context.metrics.refused(kind, "invalid", len(batch) if isinstance(batch, list) else 1)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(ApiError(exc.status_code, str(exc.detail), headers=exc.headers))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error raised below ``app`` in the API's one shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
