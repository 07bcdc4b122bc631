"""``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs``: the OTLP/HTTP receiver on the serve port.

Any OpenTelemetry SDK or collector exporting OTLP/HTTP (``OTEL_EXPORTER_OTLP_ENDPOINT=
http://aivitals:8700``) reports here; docs/otel.md, "Receiver", says what is accepted and what
each answer means. The order of checks: the ingest key (401), the content type and encoding
(415), the body's size as sent and decompressed (413), the message (400), then the store (503)
and the recorder's queue (429). Every failure is answered with a ``google.rpc.Status`` in the
request's encoding (protobuf when the content type is not one OTLP knows).

The body is read here, under this receiver's own limit (20 MiB, the specification's), not the
JSON API's: `BodyLimitMiddleware` leaves ``/v1/`` to its routes. The deadline for the body to
arrive holds as everywhere. Decoding, mapping and the durable commit run in the thread pool, so
an export of thousands of spans never holds up the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from google.protobuf.message import Message
from google.rpc import code_pb2
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from aivitals.otlp.decode import (
    CONTENT_TYPES,
    LOGS,
    MAX_BODY_BYTES,
    METRICS,
    TRACES,
    Encoding,
    OtlpError,
    Signal,
    decode,
    decompress,
    encode,
    encoding_of,
    status_body,
    too_large,
)
from aivitals.otlp.receive import OtlpReceiver, Outcome, Refused
from aivitals.server.context import ServerContext, context_of
from aivitals.server.errors import ApiError
from aivitals.server.ingest_auth import IngestKey

log = logging.getLogger("aivitals.server.otlp")

_Handler = Callable[[ServerContext, Any, bytes | None], tuple[Message, Outcome]]
"""A signal's handling of its decoded request, given the protobuf bytes it came as (or None)."""


def otlp_router(
    receiver: OtlpReceiver, *, key: IngestKey | None = None, max_body_bytes: int = MAX_BODY_BYTES
) -> APIRouter:
    """The three OTLP/HTTP routes over ``receiver``; ``key``, when given, is asked of each.

    Out of the OpenAPI schema: their bodies are protobuf messages, which it cannot describe.
    """
    router = APIRouter(tags=["otlp"], include_in_schema=False)

    def traces(context: ServerContext, request: Any, body: bytes | None) -> tuple[Message, Outcome]:
        return receiver.traces(
            request, recorder=context.runtime.recorder, queue_limit=context.queue_limit, body=body
        )

    handlers: list[tuple[Signal[Any, Any], _Handler]] = [
        (TRACES, traces),
        (METRICS, lambda context, request, body: receiver.metrics(request)),
        (LOGS, lambda context, request, body: receiver.logs(request)),
    ]
    for signal, handler in handlers:
        router.add_api_route(
            signal.path,
            _endpoint(signal, handler, key, max_body_bytes),
            methods=["POST"],
            name=f"otlp_{signal.name}",
        )
    return router


def _endpoint(
    signal: Signal[Any, Any], handler: _Handler, key: IngestKey | None, limit: int
) -> Callable[[Request], Awaitable[Response]]:
    async def export(request: Request) -> Response:
        try:
            encoding: Encoding | None = encoding_of(request.headers.get("content-type"))
        except OtlpError as unsupported:
            encoding, refusal = None, unsupported
        answer_in: Encoding = encoding or "protobuf"
        try:
            if key is not None:
                _authorize(key, request)
            if encoding is None:
                raise refusal
            body = await _read(request, limit)
            context = context_of(request)
            response, outcome = await anyio.to_thread.run_sync(
                partial(
                    _process,
                    signal,
                    handler,
                    context,
                    body=body,
                    content_encoding=request.headers.get("content-encoding"),
                    encoding=answer_in,
                    limit=limit,
                )
            )
        except Refused as exc:
            context_of(request).metrics.refused("spans", exc.reason, exc.spans)
            return _failure(exc, answer_in)
        except OtlpError as exc:
            return _failure(exc, answer_in)
        context.metrics.otlp(outcome.signal, outcome.counts)
        return Response(encode(response, answer_in), media_type=CONTENT_TYPES[answer_in])

    export.__name__ = f"export_{signal.name}"
    return export


def _process(
    signal: Signal[Any, Any],
    handler: _Handler,
    context: ServerContext,
    *,
    body: bytes,
    content_encoding: str | None,
    encoding: Encoding,
    limit: int,
) -> tuple[Message, Outcome]:
    try:
        raw = decompress(body, content_encoding, limit=limit)
        message = decode(signal, raw, encoding)
        return handler(context, message, raw if encoding == "protobuf" else None)
    except OtlpError:
        raise
    except Exception:
        # A bug of ours, not the sender's: a 500 (which OTLP exporters do not retry) says so.
        log.exception("aivitals: the OTLP receiver failed on a %s export", signal.name)
        raise OtlpError(
            500,
            "the receiver failed on this export (a bug in aivitals: see its log)",
            code=code_pb2.INTERNAL,
        ) from None


def _authorize(key: IngestKey, request: Request) -> None:
    try:
        key.require(request)
    except ApiError as exc:
        raise OtlpError(
            401,
            "missing or wrong ingest key: export with the header Authorization: Bearer <key> "
            "(OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<key>)",
            code=code_pb2.UNAUTHENTICATED,
            headers=dict(exc.headers or {}),
        ) from None


async def _read(request: Request, limit: int) -> bytes:
    """The whole body as sent, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
    except HTTPException as exc:
        # The body deadline (408) raised from the middleware below us.
        raise OtlpError(
            exc.status_code,
            str(exc.detail),
            code=code_pb2.DEADLINE_EXCEEDED,
            headers=dict(exc.headers or {}),
        ) from None
    except ClientDisconnect:
        raise OtlpError(400, "the client went away before its body arrived") from None
    return b"".join(chunks)


def _failure(error: OtlpError, encoding: Encoding) -> Response:
    return Response(
        status_body(error, encoding),
        status_code=error.status,
        media_type=CONTENT_TYPES[encoding],
        headers=error.headers,
    )
