"""``POST /api/v1/calls`` and ``POST /api/v1/scores``: records from other processes and languages.

A batch is accepted or refused whole. Every item is checked first (pydantic for types and
ranges, then `Call` / `Score` for values that cannot go together, such as more cached than input
tokens); only if all pass is any recorded. Recording goes through the runtime's recorder like any
SDK call: it prices unpriced calls and feeds every sink, the store included.

The handlers are plain functions, so FastAPI runs them in its thread pool: pricing a batch of a
thousand calls never holds up the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter

from aivitals.model import Call, InvalidRecord, Score
from aivitals.server.context import Context, ServerContext
from aivitals.server.errors import ApiError, bad_field
from aivitals.server.models import (
    Accepted,
    CallBatch,
    CallIn,
    CallsBody,
    ScoreBatch,
    ScoreIn,
    ScoresBody,
)

router = APIRouter(prefix="/api/v1", tags=["ingest"])

In = TypeVar("In", CallIn, ScoreIn)
Out = TypeVar("Out", Call, Score)

_REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"description": "A bad field; nothing of the request was recorded."}
}


@router.post("/calls", status_code=202, response_model=Accepted, responses=_REFUSED)
def post_calls(body: CallsBody, context: Context) -> Accepted:
    """Record one call, or a batch ``{"calls": [...]}`` (accepted or refused whole)."""
    items, prefix = (body.calls, "calls.") if isinstance(body, CallBatch) else ([body], "")
    calls = _build(items, CallIn.to_call, prefix)
    _check_room(context, len(calls))
    record = context.runtime.recorder.record
    return Accepted(accepted=len(calls), ids=[record(call).id for call in calls])


@router.post("/scores", status_code=202, response_model=Accepted, responses=_REFUSED)
def post_scores(body: ScoresBody, context: Context) -> Accepted:
    """Record one quality score, or a batch ``{"scores": [...]}`` (accepted or refused whole)."""
    items, prefix = (body.scores, "scores.") if isinstance(body, ScoreBatch) else ([body], "")
    scores = _build(items, ScoreIn.to_score, prefix)
    _check_room(context, len(scores))
    for score in scores:
        context.runtime.recorder.record_score(score)
    return Accepted(accepted=len(scores), ids=[score.id for score in scores])


def _build(items: Sequence[In], build: Callable[[In], Out], prefix: str) -> list[Out]:
    """Every item built, or a 422 naming every item that cannot be (``calls.3.reasoning_tokens``)."""
    built: list[Out] = []
    bad: list[dict[str, str]] = []
    for index, item in enumerate(items):
        try:
            built.append(build(item))
        except InvalidRecord as exc:
            where = f"{prefix}{index}." if prefix else ""
            problem = str(exc).removeprefix(f"{exc.field}: ")
            bad.append(bad_field(f"{where}{exc.field}", problem))
    if bad:
        named = ", ".join(item["field"] for item in bad)
        raise ApiError(422, f"invalid request: {named}; nothing was recorded", fields=bad)
    return built


def _check_room(context: ServerContext, count: int) -> None:
    # The recorder drops what does not fit in its queue; a batch refused here can be retried,
    # a batch half-dropped after a 202 is lost without anyone knowing.
    limit = context.queue_limit
    if limit is not None and context.runtime.recorder.queue_depth + count > limit:
        raise ApiError(
            503,
            "the server is behind writing to its store; retry this batch shortly",
            headers={"Retry-After": "1"},
        )
