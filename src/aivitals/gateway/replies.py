"""The answers the gateway gives itself, in OpenAI's error shape so clients parse them."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

from aivitals.errors import ErrorInfo
from aivitals.gateway.upstreams import Upstream


def openai_error(
    status: int,
    message: str,
    *,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error in the shape OpenAI clients parse; ``param`` names the field at fault."""
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}},
        status_code=status,
        headers=headers,
    )


def bad_request(
    message: str, *, code: str | None = None, param: str | None = None, status: int = 400
) -> JSONResponse:
    return openai_error(status, message, type_="invalid_request_error", code=code, param=param)


def unreachable(upstream: Upstream, info: ErrorInfo) -> JSONResponse:
    """A timeout is a 504; anything else that kept the upstream from answering a 502."""
    if info.error_type == "timeout":
        return openai_error(
            504,
            f"upstream {upstream.name!r} did not answer within {upstream.timeout_s:g} s",
            type_="timeout",
        )
    return openai_error(
        502, f"upstream {upstream.name!r} cannot be reached: {info.message}", type_="upstream_error"
    )
