"""``POST /api/v1/calls``, ``/scores`` and ``/outcomes``: records from other processes and languages.

A batch is accepted or refused whole. Every item is checked first (pydantic for types and
ranges, then `Call` / `Score` for values that cannot go together, such as more cached than input
tokens); only if all pass is any recorded. Recording goes through the runtime's recorder like any
SDK call: it prices unpriced calls and feeds every sink, the store included.

A 2xx means the batch is committed to the store (`Recorder.record_durably`: concurrent requests
share one transaction). When the store cannot take it, the answer is 503 with ``Retry-After``
and nothing of the batch is recorded anywhere: the sender keeps it and sends it again (the SDK's
exporter does, from its spool). Without a store (``serve --no-db``) there is nothing to make
durable, and a 2xx means the batch reached the recorder.

The handlers are plain functions, so FastAPI runs them in its thread pool: pricing a batch of a
thousand calls never holds up the event loop.

A batch of calls is read and validated in one step, from the JSON text (`_read_calls`), not
parsed into Python objects and validated again; any body that way does not take whole goes the
usual way, so what is refused, and how, is as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from aivitals.model import Call, InvalidRecord, Outcome, Score
from aivitals.recent_calls import inherit
from aivitals.server.context import Context, ServerContext
from aivitals.server.errors import ApiError, bad_field
from aivitals.server.models import (
    Accepted,
    CallBatch,
    CallIn,
    CallsBody,
    OutcomeBatch,
    OutcomeIn,
    OutcomesBody,
    ScoreBatch,
    ScoreIn,
    ScoresBody,
)
from aivitals.store.errors import StoreError


def _read_calls(body: bytes) -> Any:
    """``POST /calls``'s body as FastAPI then validates it: a batch read and validated from its
    JSON text in one step (about half the CPU of parsing it, then validating the objects).

    FastAPI validates what this returns against `CallsBody` again, which the calls, already
    `CallIn`, pass as they are. Any other body (one call, an invalid batch) is parsed as
    Starlette's ``Request.json`` parses it, so its validation, and its errors, are FastAPI's as
    before. So is a batch that carries money as JSON numbers: from the JSON text a ``1E+2``
    becomes ``Decimal("1E+2")``, from a parsed float ``Decimal("100.0")``, equal but not the same.
    """
    try:
        batch = CallBatch.model_validate_json(body)
    except ValueError:  # a ValidationError, or text that is not UTF-8
        return json.loads(body)
    for call in batch.calls:
        if (
            call.cost_usd is not None
            or call.input_cost_usd is not None
            or call.output_cost_usd is not None
            or call.saved_usd is not None
        ):
            return json.loads(body)
    return {"calls": batch.calls}


class _CallsRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_calls_body"):
            self._calls_body = _read_calls(await self.body())
        return self._calls_body


class _IngestRoute(APIRoute):
    """``POST /calls`` (`post_calls`) reads its body with `_read_calls`; the others as usual."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.path != _CALLS_PATH:
            return handler

        async def handle(request: Request) -> Response:
            return await handler(_CallsRequest(request.scope, request.receive))

        return handle


_PREFIX = "/api/v1"
_CALLS_PATH = f"{_PREFIX}/calls"
router = APIRouter(prefix=_PREFIX, tags=["ingest"], route_class=_IngestRoute)

In = TypeVar("In", CallIn, ScoreIn, OutcomeIn)
Out = TypeVar("Out", Call, Score, Outcome)

_REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"description": "A bad field; nothing of the request was recorded."}
}


@router.post("/calls", status_code=202, response_model=Accepted, responses=_REFUSED)
def post_calls(body: CallsBody, context: Context) -> Accepted:
    """Record one call, or a batch ``{"calls": [...]}`` (accepted or refused whole)."""
    items, prefix = (body.calls, "calls.") if isinstance(body, CallBatch) else ([body], "")
    with _counted(context, "calls", len(items)):
        recorder = context.runtime.recorder
        # Priced as fields, so each call is built and validated once (not built, priced, rebuilt).
        calls = _build(items, lambda item: item.to_call(recorder.price_fields), prefix)
        _check_room(context, len(calls))
        try:
            recorded = recorder.record_durably(calls)
        except StoreError as exc:
            raise _unavailable(exc) from None
    return Accepted(accepted=len(recorded), ids=[call.id for call in recorded])


@router.post("/scores", status_code=202, response_model=Accepted, responses=_REFUSED)
def post_scores(body: ScoresBody, context: Context) -> Accepted:
    """Record one quality score, or a batch ``{"scores": [...]}`` (accepted or refused whole)."""
    items, prefix = (body.scores, "scores.") if isinstance(body, ScoreBatch) else ([body], "")
    with _counted(context, "scores", len(items)):
        scores = _with_call_labels(context, _build(items, ScoreIn.to_score, prefix))
        _check_room(context, len(scores))
        try:
            context.runtime.recorder.record_scores_durably(scores)
        except StoreError as exc:
            raise _unavailable(exc) from None
    return Accepted(accepted=len(scores), ids=[score.id for score in scores])


@router.post("/outcomes", status_code=202, response_model=Accepted, responses=_REFUSED)
def post_outcomes(body: OutcomesBody, context: Context) -> Accepted:
    """Record one labelled outcome, or a batch ``{"outcomes": [...]}`` (accepted or refused whole).

    ``predicted`` and ``actual`` are two labels (text or true/false), two numbers, or a
    probability of true for a true/false ``actual``; ``probability`` is the confidence in a
    predicted label (docs/quality.md, "Outcomes").
    """
    items, prefix = (body.outcomes, "outcomes.") if isinstance(body, OutcomeBatch) else ([body], "")
    with _counted(context, "outcomes", len(items)):
        outcomes = _with_call_labels(context, _build(items, OutcomeIn.to_outcome, prefix))
        _check_room(context, len(outcomes))
        try:
            context.runtime.recorder.record_outcomes_durably(outcomes)
        except StoreError as exc:
            raise _unavailable(exc) from None
    return Accepted(accepted=len(outcomes), ids=[outcome.id for outcome in outcomes])


class _Refusal(ApiError):
    """An ingest refusal, with why (``invalid``, ``unavailable``, ``busy``) for the metric."""

    def __init__(self, reason: str, status: int, message: str, **options: Any) -> None:
        super().__init__(status, message, **options)
        self.reason = reason


@contextmanager
def _counted(context: ServerContext, kind: str, items: int) -> Iterator[None]:
    """Count a refused batch in aivitals_ingest_refused_items_total, by why."""
    try:
        yield
    except _Refusal as exc:
        context.metrics.refused(kind, exc.reason, items)
        raise


Labelled = TypeVar("Labelled", Score, Outcome)


def _with_call_labels(context: ServerContext, scores: list[Labelled]) -> list[Labelled]:
    """Scores without a model or feature take their stored call's (it may be from before a
    restart, or recorded by another server); the recorder fills those it recorded itself."""
    unlabelled = [score.call_id for score in scores if score.model is None or score.feature is None]
    if not unlabelled or context.queries is None:
        return scores
    try:
        labels = context.queries.call_labels(unlabelled)
    except StoreError:
        return scores  # the commit that follows answers for the store
    return [
        inherit(score, *labels[score.call_id]) if score.call_id in labels else score
        for score in scores
    ]


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
        raise _Refusal(
            "invalid", 422, f"invalid request: {named}; nothing was recorded", fields=bad
        )
    return built


def _unavailable(exc: StoreError) -> ApiError:
    if not exc.retryable:
        # The database refused the data itself (the door's checks should make this rare).
        return _Refusal(
            "invalid", 422, f"the store refused this batch: {exc}; nothing was recorded"
        )
    return _Refusal(
        "unavailable",
        503,
        f"the store cannot be written now, nothing was recorded; retry this batch ({exc})",
        # The store sink's back-off when it knows one; otherwise a second is a fair guess.
        headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s or 1)))},
    )


def _check_room(context: ServerContext, count: int) -> None:
    # The recorder drops what does not fit in its queue; a batch refused here can be retried,
    # a batch half-dropped after a 202 is lost without anyone knowing.
    limit = context.queue_limit
    if limit is not None and context.runtime.recorder.queue_depth + count > limit:
        raise _Refusal(
            "busy",
            503,
            "the server is behind writing to its store; retry this batch shortly",
            headers={"Retry-After": "1"},
        )
