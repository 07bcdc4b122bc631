"""The store's queries over HTTP: ``/api/v1/summary``, ``/breakdown``, ``/timeseries``, ``/calls``.

For the dashboard, also ``/histogram`` (calls per latency bin), ``/quality`` (score means over
time), ``/quality/groups`` (evaluator rates, mean scores and outcome metrics per group),
``/values`` (what each filter can take) and ``/calls/{id}`` (one call, its scores and trace);
``/compare`` puts two values of a field side by side (`aivitals.query.compare`); ``/drift`` a
window against its baseline (`aivitals.query.drift`); ``/cache`` what the response cache saved
and what the guardrails did (`aivitals.query.cache_impact`). Every answer is
read through `aivitals.query.Queries`: nothing here touches SQL.

Parameters read as the CLI's options do (`parse_since`, `parse_where`, `check_by`): ``since=24h``,
``where=team=search`` (repeatable), ``by=model,feature``. A parameter the queries refuse is a 422
naming it (a time series of more buckets than `MAX_BUCKETS`, an offset past `MAX_OFFSET`, a time
no datetime holds); a server started without a store, or whose store cannot be read, answers 503.
Every answer echoes the window and the filters it used, and writes money as JSON numbers (see
`aivitals.server.encoding`). Stored rows with values out of range are left out and counted:
``skipped_rows`` in each row, point and summary, and in total at the top of every answer.

The handlers are plain functions: FastAPI runs them in its thread pool, off the event loop, while
they wait on the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query
from starlette.responses import Response

from aivitals.bounds import CALL_TEXT_CHARS
from aivitals.query import (
    FILTER_FIELDS,
    LATENCY_EDGES_MS,
    MAX_OFFSET,
    AnswerTooLarge,
    CallDetail,
    Filters,
    Queries,
    QueryError,
    Window,
    check_by,
    parse_since,
    parse_where,
)
from aivitals.query.quality_report import quality_report
from aivitals.server.context import Context, ServerContext
from aivitals.server.encoding import JsonResponse
from aivitals.server.errors import ApiError, bad_field
from aivitals.store.errors import StoreError

router = APIRouter(prefix="/api/v1", tags=["read"], default_response_class=JsonResponse)

T = TypeVar("T")

Since = Annotated[
    str,
    Query(description="How far back: 30m, 24h, 7d, 2w, or an ISO date or time (UTC if no offset)."),
]
Where = Annotated[
    list[str] | None,
    Query(
        description="Keep only calls where FIELD=VALUE (repeatable): model, provider, feature, "
        "team, user, prompt_version, environment, status, error_type, operation, service_tier, "
        "quantization."
    ),
]
By = Annotated[str, Query(description="Fields to group by, comma-separated.")]

_ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The answer would be too large (a time series of too many buckets)."},
    422: {"description": "A parameter the queries cannot use; the message says which."},
    503: {"description": "No store configured (start with --db), or the store cannot be reached."},
}


@router.get("/summary", responses=_ANSWERS)
def get_summary(context: Context, since: Since = "24h", where: Where = None) -> Response:
    """Counts, spend, tokens, latency, speed, cache and quality of the window's calls."""

    def answer(queries: Queries, window: Window, filters: Filters) -> dict[str, Any]:
        summary = queries.summary(window, filters)
        return {"summary": summary, "skipped_rows": summary.skipped_rows}

    return _answer(context, since, where, answer)


@router.get("/breakdown", responses=_ANSWERS)
def get_breakdown(
    context: Context,
    since: Since = "24h",
    where: Where = None,
    by: By = "model",
) -> Response:
    """The summary's measures per combination of ``by`` values, most expensive first."""
    fields = _by(by)

    def answer(queries: Queries, window: Window, filters: Filters) -> dict[str, Any]:
        rows = queries.breakdown(window, filters, fields)
        return {"by": fields, "rows": rows, "skipped_rows": sum(r.skipped_rows for r in rows)}

    return _answer(context, since, where, answer)


@router.get("/timeseries", responses=_ANSWERS)
def get_timeseries(
    context: Context,
    since: Since = "24h",
    where: Where = None,
    step: Annotated[str, Query(description="Bucket size: minute, hour or day (UTC).")] = "hour",
    by: Annotated[str | None, Query(description="One field to split each bucket by.")] = None,
) -> Response:
    """Calls, errors, spend, tokens and latency percentiles per ``step`` (and ``by`` value)."""
    group = _one_field(by)

    def answer(queries: Queries, window: Window, filters: Filters) -> dict[str, Any]:
        points = queries.timeseries(window, filters, step, group)
        skipped = sum(p.skipped_rows for p in points)
        return {"step": step, "by": group, "points": points, "skipped_rows": skipped}

    return _answer(context, since, where, answer)


@router.get("/calls", responses=_ANSWERS)
def get_calls(
    context: Context,
    since: Since = "1h",
    where: Where = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Calls per page.")] = 50,
    offset: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_OFFSET,
            description="Skip this many newest calls (at most 1,000,000: narrow since instead).",
        ),
    ] = 0,
) -> Response:
    """A page of the window's calls, newest first, each with its quality scores.

    Stored calls that cannot be read (values out of range, text that is not valid Unicode) are
    left out and counted in ``skipped_rows``; the page is then shorter than ``limit``.
    """

    def answer(queries: Queries, window: Window, filters: Filters) -> dict[str, Any]:
        page = queries.calls_page(window, filters, limit=limit, offset=offset)
        return {
            "limit": limit,
            "offset": offset,
            "calls": page.calls,
            "skipped_rows": page.skipped_rows,
        }

    return _answer(context, since, where, answer)


@router.get("/histogram", responses=_ANSWERS)
def get_histogram(
    context: Context,
    since: Since = "24h",
    where: Where = None,
    by: Annotated[str | None, Query(description="One field to split the calls by.")] = None,
) -> Response:
    """Calls per latency bin: ``edges_ms`` are the bins' upper edges, and each series has one
    more count than there are edges (the calls at or above the last edge)."""
    group = _one_field(by)

    def answer(queries: Queries, window: Window, filters: Filters) -> dict[str, Any]:
        series = queries.histogram(window, filters, group)
        skipped = sum(s.skipped_rows for s in series)
        return {
            "by": group,
            "edges_ms": LATENCY_EDGES_MS,
            "series": series,
            "skipped_rows": skipped,
        }

    return _answer(context, since, where, answer)


@router.get("/quality", responses=_ANSWERS)
def get_quality(
    context: Context,
    since: Since = "24h",
    where: Where = None,
    step: Annotated[str, Query(description="Bucket size: minute, hour or day (UTC).")] = "hour",
) -> Response:
    """Each score's mean and count per ``step`` bucket of its call's start, oldest first."""

    def answer(queries: Queries, window: Window, filters: Filters) -> dict[str, Any]:
        points = queries.score_means(window, filters, step)
        return {"step": step, "points": points, "skipped_rows": sum(p.skipped_rows for p in points)}

    return _answer(context, since, where, answer)


@router.get("/quality/groups", responses=_ANSWERS)
def get_quality_groups(
    context: Context, since: Since = "24h", where: Where = None, by: By = "model"
) -> Response:
    """Per group: the evaluators' rates (refusal, empty, truncated, invalid_json, pii_leak), the
    mean of every other score, and the labelled-outcome metrics (``outcomes_unavailable`` says
    what to install when scikit-learn is missing)."""
    names = _by(by)

    def answer(queries: Queries, window: Window, filters: Filters) -> dict[str, Any]:
        report = quality_report(queries, window, filters, names)
        return {
            "by": report.by,
            "groups": report.groups,
            "outcomes_unavailable": report.outcomes_unavailable,
            "skipped_rows": report.skipped_rows,
        }

    return _answer(context, since, where, answer)


@router.get("/compare", responses=_ANSWERS)
def get_compare(
    context: Context,
    *,
    since: Since = "7d",
    where: Where = None,
    by: Annotated[
        str, Query(description="The one field whose two values are compared.")
    ] = "prompt_version",
    a: Annotated[
        str | None, Query(description="The value compared against (A); with b, or neither.")
    ] = None,
    b: Annotated[
        str | None,
        Query(description="The value compared (B). Neither: the two most frequent values."),
    ] = None,
    min_samples: Annotated[
        int, Query(ge=2, le=5000, description="Fewer calls a side: not enough data.")
    ] = 30,
) -> Response:
    """B against A: latency p50/p95, error and refusal rates, cost and tokens per call and every
    score, each with B - A, its 95% interval, its test's p-value and a verdict
    (``regression``, ``improvement``, ``no significant difference``, ``not enough data``); see
    docs/quality.md, "Comparing prompt versions"."""

    def answer(queries: Queries, window: Window, filters: Filters) -> dict[str, Any]:
        found = queries.compare(window, filters, by, a=a, b=b, min_samples=min_samples)
        return {"comparison": found, "skipped_rows": found.skipped_rows}

    return _answer(context, since, where, answer)


@router.get("/drift", responses=_ANSWERS)
def get_drift(
    context: Context,
    *,
    window: Annotated[
        str, Query(description="The current window, ending now: 30m, 1h, 24h.")
    ] = "1h",
    baseline: Annotated[
        str, Query(description="Trailing days, same hours (7d), or pinned:NAME.")
    ] = "7d",
    pinned: Annotated[
        str | None, Query(description="A pinned baseline's name (instead of baseline).")
    ] = None,
    by: Annotated[str, Query(description="Fields to group by, comma-separated; none: all.")] = "",
    where: Where = None,
    signal: Annotated[
        list[str] | None, Query(description="Only these signals (repeatable); default all.")
    ] = None,
    min_samples: Annotated[
        int, Query(ge=2, le=1_000_000, description="Fewer a side: not enough data.")
    ] = 200,
) -> Response:
    """Every signal per group, the current window against its baseline: baseline and current
    value, PSI or Cohen's h, the test's adjusted p-value and a verdict (``stable``,
    ``moderate``, ``significant``, ``not enough data``); see docs/drift.md."""
    from aivitals.query.drift import current_window  # noqa: PLC0415  # scipy, on first use

    queries = _queries(context)
    current = _checked(lambda: current_window(window, now=context.now()))
    filters = _checked(lambda: parse_where(where or []))
    names = _by(by) if by.strip() else ()
    reference = f"pinned:{pinned}" if pinned is not None else baseline
    found = _reading(
        lambda: _checked(
            lambda: queries.drift(
                current,
                filters,
                names,
                baseline=reference,
                signals=signal,
                min_samples=min_samples,
            )
        )
    )
    return JsonResponse({"window": current, "filters": dict(filters.items()), "drift": found})


@router.get("/cache", responses=_ANSWERS)
def get_cache(context: Context, since: Since = "24h", where: Where = None) -> Response:
    """Per cache level (``exact``, ``semantic``, ``miss``, ``uncached``): calls and their share,
    spend, spend avoided, upstream time avoided (estimated from the same model's successful
    misses: ``time_avoided_method`` says so) and latency p50/p95; and the guardrails' actions
    (counts per guardrail and action, ``content_filter`` blocks)."""

    def answer(queries: Queries, window: Window, filters: Filters) -> dict[str, Any]:
        found = queries.cache_impact(window, filters)
        return {"cache": found, "skipped_rows": found.skipped_rows}

    return _answer(context, since, where, answer)


@router.get("/values", responses=_ANSWERS)
def get_values(
    context: Context,
    since: Since = "24h",
    field: Annotated[
        list[str] | None,
        Query(
            description="Fields to list (repeatable); default model, provider, feature, "
            "team, user, environment."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Values per field.")] = 200,
) -> Response:
    """The values each field takes among the window's calls, most calls first (absent left out)."""
    fields: tuple[str, ...] = FILTER_FIELDS
    if field:
        try:
            fields = check_by(field)
        except QueryError as exc:
            # check_by speaks of the fields to group by; here they are the ones to list.
            raise _refused(exc, parameter="field") from None

    def answer(queries: Queries, window: Window, filters: Filters) -> dict[str, Any]:
        return {"values": queries.values(window, fields, limit=limit)}

    return _answer(context, since, None, answer)


@router.get(
    "/calls/{call_id}",
    responses={
        **_ANSWERS,
        404: {"description": "No stored call has this id, or the one stored cannot be read."},
    },
)
def get_call(context: Context, call_id: str) -> Response:
    """One call with its scores, every stored call of its trace (itself included) and, when
    content capture kept it, its ``content`` (prompt and answer, redacted; else null)."""
    queries = _queries(context)
    if len(call_id) > CALL_TEXT_CHARS["id"] or "\x00" in call_id:
        # No stored id is longer, nor holds NUL (which PostgreSQL refuses in a query outright).
        raise ApiError(404, "no stored call has this id")

    detail = _reading(lambda: queries.call(call_id))
    if detail is None:
        raise ApiError(404, "no stored call has this id")
    if not isinstance(detail, CallDetail):  # UNREADABLE
        raise ApiError(
            404,
            "the call stored with this id cannot be read: a value in it is out of range or "
            "not valid text (written by an older version or another tool); reads leave it out",
        )
    return JsonResponse(detail)


def _queries(context: ServerContext) -> Queries:
    if context.queries is None:
        raise ApiError(
            503, "this server keeps no store, so it has no history to read: start it with --db"
        )
    return context.queries


def _answer(
    context: ServerContext,
    since: str,
    where: list[str] | None,
    answer: Callable[[Queries, Window, Filters], dict[str, Any]],
) -> Response:
    queries = context.queries
    if queries is None:
        raise ApiError(
            503, "this server keeps no store, so it has no history to read: start it with --db"
        )
    window = _checked(lambda: parse_since(since, now=context.now()))
    filters = _checked(lambda: parse_where(where or []))
    document = _reading(lambda: _checked(lambda: answer(queries, window, filters)))
    return JsonResponse({"window": window, "filters": dict(filters.items()), **document})


def _reading(run: Callable[[], T]) -> T:
    """``run()``, with a store that cannot answer turned into a 503 that says why."""
    try:
        return run()
    except StoreError as exc:
        raise ApiError(503, str(exc)) from None


def _by(text: str) -> tuple[str, ...]:
    return _checked(lambda: check_by([name.strip() for name in text.split(",") if name.strip()]))


def _one_field(text: str | None) -> str | None:
    """The one ``by`` field of a time series or histogram; None when not given."""
    if text is None:
        return None
    fields = _by(text)
    if len(fields) != 1:
        # Blank (spaces, or a character Python counts as one, such as U+0085) or several.
        message = f"by: give one field to split by, got {text[:40]!r}"
        raise ApiError(422, message, fields=[bad_field("query.by", message)])
    return fields[0]


def _checked(run: Callable[[], T]) -> T:
    """``run()``, with a `QueryError` turned into a 422 naming the parameter (a 400 for an
    `AnswerTooLarge`: the request is well formed, it asks for too much at once)."""
    try:
        return run()
    except QueryError as exc:
        raise _refused(exc) from None


def _refused(exc: QueryError, *, parameter: str | None = None) -> ApiError:
    """The API's rendering of a `QueryError`: ``"since: ..."``, naming ``query.since``."""
    name = parameter or exc.parameter
    message = f"{name}: {exc.problem}" if name else exc.problem
    status = 400 if isinstance(exc, AnswerTooLarge) else 422
    return ApiError(
        status, message, fields=[bad_field(f"query.{name}" if name else "query", message)]
    )
