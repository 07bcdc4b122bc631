"""Operations: ``GET /metrics`` for Prometheus, ``/healthz`` (alive) and ``/readyz`` (can work).

``/readyz`` runs the context's readiness checks (the store answers a trivial query and its writes
are not failing, when there is one; the gateway's upstreams, when configured) and answers 503 naming each failure,
so a load balancer stops sending traffic to a replica whose store is gone.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client.exposition import choose_encoder
from starlette.responses import Response

from aivitals.query import Queries
from aivitals.recorder import Recorder
from aivitals.server.context import Context
from aivitals.server.encoding import JsonResponse
from aivitals.store.errors import StoreError
from aivitals.store.sql import SqlStore
from aivitals.store.writer_process import ProcessWrittenStore

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
def get_metrics(request: Request, context: Context) -> Response:
    """Every metric in one scrape: the calls' (aivitals_*), the server's and the process's."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(context.metrics.scrape_registry), media_type=content_type)


@router.get("/healthz", response_class=JsonResponse)
async def get_healthz() -> JsonResponse:
    """Liveness: the process answers HTTP."""
    return JsonResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_class=JsonResponse,
    responses={503: {"description": "A check failed; the body names it and says why."}},
)
def get_readyz(context: Context) -> JsonResponse:
    """Readiness: every check passes (the store answers, when there is one)."""
    results: dict[str, str] = {}
    failed: list[str] = []
    for name, check in context.checks.items():
        try:
            note = check()
        except Exception as exc:
            results[name] = str(exc) or type(exc).__name__
            failed.append(f"{name}: {results[name]}")
        else:
            results[name] = note or "ok"
    if failed:
        return JsonResponse(
            {"status": "unready", "error": "; ".join(failed), "checks": results}, status_code=503
        )
    return JsonResponse({"status": "ready", "checks": results})


def check_store(store: SqlStore, recorder: Recorder | None = None) -> str:
    """Raise unless ``store`` answers, still holds its tables, and takes ``recorder``'s writes;
    else say where its writes run (``serve``'s store writer ``auto`` picks one at start).

    `SqlStore.ping` alone passes on SQLite whatever the file holds (``SELECT 1`` never reads
    it), so this also reads one row of ``calls``. Reading proves nothing about writing (a full
    disk reads fine): the recorder's store sink says whether its last writes failed.
    """
    failing = recorder.store_health() if recorder is not None else None
    if failing is not None:
        raise StoreError(f"{store.name} cannot be written: {failing}")
    store.ping()
    Queries(store.engine, name=store.name).check_readable()
    if isinstance(store, ProcessWrittenStore):
        return "ok; written by its writer process"
    return "ok; written from a thread of this process"
