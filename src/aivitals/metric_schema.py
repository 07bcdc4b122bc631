"""Every metric aivitals exposes, declared once: its name, kind, labels, help text and buckets.

The Prometheus sink, the gateway's and the server's own metrics build their families from these
declarations; the Grafana export and the Prometheus rule export write their queries over them;
docs/metrics.md documents each one (a test holds the page to this module). So a name, a label or
a bucket bound changes here, or nowhere. This module imports nothing beyond the standard library:
readers of the schema (exports, docs tests) need no ``prometheus_client`` and no web framework.

Names are as scraped: a counter's ends in ``_total`` (`MetricSpec.family` is the name without it,
the one ``prometheus_client`` takes). Summing a counter over any of its labels means something:
where a label splits a quantity (``type`` of `TOKENS`, ``kind`` of `INPUT_TOKENS`), its values
are a partition of it, never overlapping parts.

>>> TOKENS.name, TOKENS.kind, TOKENS.labels, TOKENS.values["type"]
('aivitals_tokens_total', 'counter', ('provider', 'model', 'type'), ('input', 'output'))
>>> BY_NAME["aivitals_request_duration_seconds"].buckets[:3]
(0.01, 0.02, 0.04)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: what Prometheus scrapes, and what dashboards and rules may query."""

    name: str
    """As scraped: ``aivitals_requests_total``; a histogram's series add ``_bucket`` and so on."""
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    """A histogram's upper bounds, ``+Inf`` left implicit."""
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    """The closed value set of a label that aivitals itself writes (``type`` of `TOKENS`)."""
    external: bool = False
    """Exposed by ``prometheus_client``'s process and platform collectors, not by aivitals: the
    help text is that library's. Declared so that the dashboard may read them."""

    @property
    def family(self) -> str:
        """The family name ``prometheus_client`` uses: a counter's name without ``_total``."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name


def _doubling(first: float, count: int) -> tuple[float, ...]:
    return tuple(round(first * 2**i, 2) for i in range(count))


DURATION_BUCKETS = _doubling(0.01, 14)
"""OpenTelemetry's ``gen_ai.client.operation.duration`` bounds: 0.01 s doubling to 81.92 s."""
TOKENS_PER_SECOND_BUCKETS = (1.0, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 1000)
RATIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
HTTP_DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""The server's own requests: ingest and reads answer in milliseconds; the upper buckets catch
slow store queries."""

TOKEN_TYPES = ("input", "output")
"""OpenTelemetry's ``gen_ai.token.type`` values: input includes cache reads and writes, output
includes reasoning, so the two add up to every token."""
INPUT_KINDS = ("uncached", "cache_read", "cache_write")
"""A partition of input tokens: read from the prompt cache, written to it, or neither."""
OUTPUT_KINDS = ("non_reasoning", "reasoning")
"""A partition of output tokens: reasoning (thinking) tokens, and all the others."""

_MODEL = ("provider", "model")

REQUESTS = MetricSpec(
    "aivitals_requests_total",
    "counter",
    "Model calls by outcome.",
    (*_MODEL, "operation", "status", "error_type"),
)
DURATION = MetricSpec(
    "aivitals_request_duration_seconds",
    "histogram",
    "End-to-end latency of model calls.",
    (*_MODEL, "operation"),
    DURATION_BUCKETS,
)
TIME_TO_FIRST_TOKEN = MetricSpec(
    "aivitals_time_to_first_token_seconds",
    "histogram",
    "Time to the first streamed chunk.",
    _MODEL,
    DURATION_BUCKETS,
)
TOKENS = MetricSpec(
    "aivitals_tokens_total",
    "counter",
    "Tokens by type: input (cache reads and writes included) and output (reasoning included).",
    (*_MODEL, "type"),
    values={"type": TOKEN_TYPES},
)
INPUT_TOKENS = MetricSpec(
    "aivitals_input_tokens_total",
    "counter",
    "Input tokens by kind: uncached, cache_read and cache_write add up to the input.",
    (*_MODEL, "kind"),
    values={"kind": INPUT_KINDS},
)
OUTPUT_TOKENS = MetricSpec(
    "aivitals_output_tokens_total",
    "counter",
    "Output tokens by kind: non_reasoning and reasoning add up to the output.",
    (*_MODEL, "kind"),
    values={"kind": OUTPUT_KINDS},
)
COST = MetricSpec(
    "aivitals_cost_usd_total",
    "counter",
    "Spend in US dollars on priced calls.",
    (*_MODEL, "feature", "team"),
)
UNPRICED = MetricSpec(
    "aivitals_unpriced_calls_total",
    "counter",
    "Calls to models with no known price (recorded with cost_usd null).",
    _MODEL,
)
CACHE_REQUESTS = MetricSpec(
    "aivitals_cache_requests_total",
    "counter",
    "Response cache lookups by result (hit, miss, bypass) and level (exact, semantic).",
    (*_MODEL, "result", "level"),
)
CACHE_SAVED = MetricSpec(
    "aivitals_cache_saved_usd_total",
    "counter",
    "What response-cache hits saved: the cost of the answers they replayed.",
    _MODEL,
)
OUTPUT_SPEED = MetricSpec(
    "aivitals_output_tokens_per_second",
    "histogram",
    "Generation speed: output tokens per second after the first token.",
    _MODEL,
    TOKENS_PER_SECOND_BUCKETS,
)
CONTEXT_UTILISATION = MetricSpec(
    "aivitals_context_utilisation_ratio",
    "histogram",
    "Input tokens as a share of the model's context window.",
    _MODEL,
    RATIO_BUCKETS,
)
CALLS_BY_QUANTIZATION = MetricSpec(
    "aivitals_calls_by_quantization_total",
    "counter",
    "Calls to self-hosted models by the quantisation that served them (calls that report one).",
    (*_MODEL, "quantization"),
)
IN_FLIGHT = MetricSpec(
    "aivitals_requests_in_flight",
    "gauge",
    "Model calls started and not yet finished.",
    _MODEL,
)
QUALITY = MetricSpec(
    "aivitals_quality_score",
    "histogram",
    "Quality scores, normalised to 0..1.",
    ("name", "model", "feature"),
    SCORE_BUCKETS,
)
EVALUATOR_NAMES = ("empty", "truncated", "refusal", "json_valid", "pii_leak")
"""The built-in evaluators (docs/quality.md); users may register more."""
EVALUATIONS = MetricSpec(
    "aivitals_evaluations_total",
    "counter",
    "Evaluator verdicts (scores with source evaluator, 0 or 1), by evaluator and result: true "
    "when it found what it looks for (a refusal, an empty or cut answer, valid JSON, PII).",
    ("name", "result", "model", "feature"),
    values={"result": ("true", "false")},
)

CALL_METRICS = (
    REQUESTS,
    DURATION,
    TIME_TO_FIRST_TOKEN,
    TOKENS,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    COST,
    UNPRICED,
    CACHE_REQUESTS,
    CACHE_SAVED,
    OUTPUT_SPEED,
    CONTEXT_UTILISATION,
    CALLS_BY_QUANTIZATION,
    IN_FLIGHT,
    QUALITY,
    EVALUATIONS,
)
"""What the Prometheus sink keeps for every call and score."""

DROPPED_CALLS = MetricSpec(
    "aivitals_dropped_calls_total",
    "counter",
    "Calls dropped because the recorder's queue was full.",
)
DROPPED_SCORES = MetricSpec(
    "aivitals_dropped_scores_total",
    "counter",
    "Scores dropped because the recorder's queue was full.",
)
SINK_ERRORS = MetricSpec(
    "aivitals_sink_errors_total",
    "counter",
    "Failures raised by a sink (never propagated).",
    ("sink",),
)
SINK_FAILED_ITEMS = MetricSpec(
    "aivitals_sink_failed_items_total",
    "counter",
    "Calls and scores in batches a sink failed to take.",
    ("sink",),
)
INTERNAL_ERRORS = MetricSpec(
    "aivitals_internal_errors_total",
    "counter",
    "Failures inside aivitals itself (never propagated).",
)
QUEUE_DEPTH = MetricSpec(
    "aivitals_queue_depth",
    "gauge",
    "Calls and scores accepted and not yet delivered, in every buffer of this process.",
)
BUFFERED_ITEMS = MetricSpec(
    "aivitals_buffered_items",
    "gauge",
    "Calls and scores waiting, by sink and buffer (queue, store_retry, store_pending_files, "
    "exporter_spool).",
    ("sink", "buffer"),
)
LOST_ITEMS = MetricSpec(
    "aivitals_lost_items_total",
    "counter",
    "Calls and scores accepted and then lost for good, by sink and reason.",
    ("sink", "reason"),
)
QUALITY_DROPPED = MetricSpec(
    "aivitals_quality_dropped_total",
    "counter",
    "Call contents the quality stage dropped before its evaluators saw them, by reason "
    "(queue_full, shutdown); the calls themselves were recorded.",
    ("reason",),
    values={"reason": ("queue_full", "shutdown")},
)
QUALITY_ERRORS = MetricSpec(
    "aivitals_quality_errors_total",
    "counter",
    "Failures inside the quality stage, by part: content (building a call's content), a "
    "consumer's name, or evaluator/<name>; each is skipped, never propagated.",
    ("part",),
)

HEALTH_METRICS = (
    DROPPED_CALLS,
    DROPPED_SCORES,
    SINK_ERRORS,
    SINK_FAILED_ITEMS,
    INTERNAL_ERRORS,
    QUEUE_DEPTH,
    BUFFERED_ITEMS,
    LOST_ITEMS,
    QUALITY_DROPPED,
    QUALITY_ERRORS,
)
"""The recorder's own health, read from it at scrape time."""

SDK_SYNCHRONOUS_RECORDS = MetricSpec(
    "aivitals_sdk_synchronous_records_total",
    "counter",
    "Tracked calls the SDK recorded on the application's thread because 10,000 were already "
    "waiting for its background worker (back-pressure; none is dropped).",
)
"""The SDK's hand-off (`aivitals.sdk.handoff_metrics`), in a process that configured the SDK."""

JUDGE_OUTCOMES = (
    "judged",
    "malformed",
    "failed",
    "over_budget",
    "dropped",
    "not_sampled",
    "skipped",
)
"""What became of a call offered to the LLM judge (`aivitals.quality.judge.OUTCOMES`)."""
JUDGE_REQUESTS = MetricSpec(
    "aivitals_judge_requests_total",
    "counter",
    "Calls offered to the LLM judge, by what became of them: judged, malformed (the verdict "
    "could not be read), failed (the endpoint, after retries), over_budget, dropped (queue "
    "full, shutdown), not_sampled, skipped (nothing to judge).",
    ("outcome",),
    values={"outcome": JUDGE_OUTCOMES},
)
JUDGE_RETRIES = MetricSpec(
    "aivitals_judge_retries_total",
    "counter",
    "Requests to the judge endpoint sent again after a failure (429, 5xx, timeout, connection).",
)
JUDGE_MISSING_CRITERIA = MetricSpec(
    "aivitals_judge_missing_criteria_total",
    "counter",
    "Criteria a readable verdict left ungraded (absent, not a number, outside 0..1).",
)
JUDGE_QUEUE_DEPTH = MetricSpec(
    "aivitals_judge_queue_depth", "gauge", "Calls sampled and waiting for a judge worker."
)
JUDGE_SPENT = MetricSpec(
    "aivitals_judge_spent_usd",
    "gauge",
    "What the judge's own calls cost today (in the judge's time zone), priced by the recorder.",
)
JUDGE_BUDGET = MetricSpec(
    "aivitals_judge_budget_usd",
    "gauge",
    "The judge's daily budget (max_daily_usd); absent when it has none.",
)
JUDGE_BUDGET_EXHAUSTED = MetricSpec(
    "aivitals_judge_budget_exhausted",
    "gauge",
    "1 while today's judge spend has reached its budget (no call is judged until the next day).",
)

JUDGE_METRICS = (
    JUDGE_REQUESTS,
    JUDGE_RETRIES,
    JUDGE_MISSING_CRITERIA,
    JUDGE_QUEUE_DEPTH,
    JUDGE_SPENT,
    JUDGE_BUDGET,
    JUDGE_BUDGET_EXHAUSTED,
)
"""The LLM judge's own state, when one is configured (`aivitals.quality.judge_metrics`)."""

LABEL_OVERFLOW = MetricSpec(
    "aivitals_label_overflow_total",
    "counter",
    "Label values recorded under '_other' because their metric's label cap was full.",
    ("metric", "label"),
)
"""One family per scrape, merged from every part that caps labels (`aivitals.cardinality`)."""

GATEWAY_REFUSALS = MetricSpec(
    "aivitals_gateway_refusals_total",
    "counter",
    "Requests the gateway answered itself without calling an upstream, by reason: auth (401), "
    "bad_request (4xx), rate_limit (429), budget (429), limits_unavailable (503: shared "
    "limits unreachable under limits_on_failure = closed).",
    ("reason",),
)
GATEWAY_CACHE_ENTRIES = MetricSpec(
    "aivitals_gateway_cache_entries", "gauge", "Answers held by the response cache."
)
GATEWAY_CACHE_BYTES = MetricSpec(
    "aivitals_gateway_cache_bytes", "gauge", "Bytes held by the response cache."
)

GUARDRAIL_ACTIONS = MetricSpec(
    "aivitals_guardrail_actions_total",
    "counter",
    "Times a gateway guardrail acted, by guardrail name, side (input, output) and action "
    "(redact, block, flag).",
    ("guardrail", "on", "action"),
    values={"on": ("input", "output"), "action": ("redact", "block", "flag")},
)
"""Its labels are bounded by the config file (names) and two closed sets: no cap needed."""

GATEWAY_OVERHEAD = MetricSpec(
    "aivitals_gateway_overhead_seconds",
    "histogram",
    "Time the gateway itself spent on a request (its time less the waits for the upstream; a "
    "stream's: up to its head, then each chunk's handling and the recording), by route and "
    "stream (true when the answer was streamed).",
    ("route", "stream"),
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    values={"stream": ("true", "false")},
)

GATEWAY_METRICS = (
    GATEWAY_REFUSALS,
    GATEWAY_CACHE_ENTRIES,
    GATEWAY_CACHE_BYTES,
    GUARDRAIL_ACTIONS,
    GATEWAY_OVERHEAD,
)
"""What the gateway answered itself; calls it proxied count in `CALL_METRICS`."""

HTTP_REQUESTS = MetricSpec(
    "aivitals_http_server_requests_total",
    "counter",
    "HTTP requests answered by the aivitals server, by route template and status.",
    ("method", "route", "status"),
)
HTTP_DURATION = MetricSpec(
    "aivitals_http_server_request_duration_seconds",
    "histogram",
    "Time from a request's arrival to the end of its response.",
    ("method", "route"),
    HTTP_DURATION_BUCKETS,
)
HTTP_IN_FLIGHT = MetricSpec(
    "aivitals_http_server_requests_in_flight", "gauge", "HTTP requests being handled now."
)

INGEST_KINDS = ("calls", "scores", "outcomes", "spans")
INGEST_REFUSALS = ("invalid", "unavailable", "busy")
INGEST_REFUSED = MetricSpec(
    "aivitals_ingest_refused_items_total",
    "counter",
    "Calls, scores and OTLP spans the ingest API and the OTLP receiver refused, so their sender "
    "still holds them: invalid (422 or 400), unavailable (503, the store cannot be written), busy "
    "(503 or 429, too much is waiting).",
    ("kind", "reason"),
    values={"kind": INGEST_KINDS, "reason": INGEST_REFUSALS},
)
OTLP_OUTCOMES: Mapping[str, tuple[str, ...]] = {
    "traces": ("recorded", "not_model", "rejected"),
    "metrics": ("dropped",),
    "logs": ("dropped",),
}
"""What becomes of an accepted OTLP item, by signal (docs/otel.md, "Receiver")."""
OTLP_ITEMS = MetricSpec(
    "aivitals_otlp_items_total",
    "counter",
    "Items of accepted OTLP exports by signal (spans, metric data points, log records) and what "
    "became of them: recorded as calls, not a model call, rejected (partial success), dropped.",
    ("signal", "outcome"),
    values={
        "signal": tuple(OTLP_OUTCOMES),
        "outcome": tuple(dict.fromkeys(o for os in OTLP_OUTCOMES.values() for o in os)),
    },
)

SERVER_METRICS = (HTTP_REQUESTS, HTTP_DURATION, HTTP_IN_FLIGHT, INGEST_REFUSED, OTLP_ITEMS)
"""The HTTP server's own requests (`aivitals serve`)."""

EVENT_LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""A healthy loop wakes within a millisecond; past 100 ms every request on it waits that long."""
EVENT_LOOP_LAG = MetricSpec(
    "aivitals_event_loop_lag_seconds",
    "histogram",
    "How late a short sleep on the server's event loop woke: the time every request on the loop "
    "waited for blocking work.",
    buckets=EVENT_LOOP_LAG_BUCKETS,
)
_GPU = ("gpu", "name")
GPU_UTILISATION = MetricSpec(
    "aivitals_gpu_utilisation_ratio",
    "gauge",
    "Share of NVML's last sample period in which a kernel ran on the device, 0 to 1.",
    _GPU,
)
GPU_MEMORY_USED = MetricSpec(
    "aivitals_gpu_memory_used_bytes", "gauge", "Device memory in use, in bytes.", _GPU
)
GPU_MEMORY_TOTAL = MetricSpec(
    "aivitals_gpu_memory_total_bytes", "gauge", "Device memory installed, in bytes.", _GPU
)
GPU_TEMPERATURE = MetricSpec(
    "aivitals_gpu_temperature_celsius", "gauge", "The device's core temperature.", _GPU
)
GPU_METRICS = (GPU_UTILISATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL, GPU_TEMPERATURE)
"""Per NVIDIA device (``gpu`` is NVML's index), only when NVML is present and starts."""
SYSTEM_METRICS = (EVENT_LOOP_LAG, *GPU_METRICS)
"""The server's event loop and GPUs (`aivitals.server.system_metrics`)."""

REDIS_FEATURES = ("limits", "budgets", "cache")
"""What the shared state (`aivitals.shared`) keeps in Redis, each with its own failure policy."""
REDIS_UP = MetricSpec(
    "aivitals_redis_up",
    "gauge",
    "1 while the shared state's Redis answers, 0 while this process falls back (docs/shared-state.md).",
)
REDIS_ERRORS = MetricSpec(
    "aivitals_redis_errors_total",
    "counter",
    "Redis commands that failed (connection refused, timeout, error reply), by feature.",
    ("feature",),
    values={"feature": REDIS_FEATURES},
)
REDIS_FALLBACKS = MetricSpec(
    "aivitals_redis_fallbacks_total",
    "counter",
    "Requests and writes that took the Redis-down policy instead of Redis, by feature: limits "
    "open or closed, budgets on local accounting, cache skipped.",
    ("feature",),
    values={"feature": REDIS_FEATURES},
)
REDIS_ROUND_TRIP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
"""A local Redis answers in about 0.1 ms; past the 100 ms default timeout a command has failed."""
REDIS_ROUND_TRIP = MetricSpec(
    "aivitals_redis_round_trip_seconds",
    "histogram",
    "Time of one awaited Redis round trip on a request's admission (a script or a GET), by feature.",
    ("feature",),
    REDIS_ROUND_TRIP_BUCKETS,
    values={"feature": REDIS_FEATURES},
)
SHARED_METRICS = (REDIS_UP, REDIS_ERRORS, REDIS_FALLBACKS, REDIS_ROUND_TRIP)
"""The shared state in Redis (`aivitals.shared`), only with ``serve --redis``."""

PROCESS_CPU = MetricSpec(
    "process_cpu_seconds_total",
    "counter",
    "Total user and system CPU time spent in seconds.",
    external=True,
)
PROCESS_RESIDENT_MEMORY = MetricSpec(
    "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", external=True
)
PROCESS_METRICS = (
    PROCESS_CPU,
    PROCESS_RESIDENT_MEMORY,
    MetricSpec(
        "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", external=True
    ),
    MetricSpec(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        external=True,
    ),
    MetricSpec("process_open_fds", "gauge", "Number of open file descriptors.", external=True),
    MetricSpec(
        "process_max_fds", "gauge", "Maximum number of open file descriptors.", external=True
    ),
    MetricSpec(
        "python_info",
        "gauge",
        "Python platform information",
        ("implementation", "major", "minor", "patchlevel", "version"),
        external=True,
    ),
)
"""The server's process, from ``prometheus_client``'s collectors (Linux)."""

METRICS = (
    *CALL_METRICS,
    *HEALTH_METRICS,
    SDK_SYNCHRONOUS_RECORDS,
    *JUDGE_METRICS,
    LABEL_OVERFLOW,
    *GATEWAY_METRICS,
    *SERVER_METRICS,
    *SHARED_METRICS,
    *SYSTEM_METRICS,
    *PROCESS_METRICS,
)
"""Every metric that ``/metrics`` of ``aivitals serve`` may carry, in docs/metrics.md's order."""

BY_NAME: Mapping[str, MetricSpec] = {spec.name: spec for spec in METRICS}
"""`METRICS` by their scraped name."""
