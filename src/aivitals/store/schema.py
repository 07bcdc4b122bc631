"""The store's tables, in SQLAlchemy Core: the same definitions serve SQLite and PostgreSQL.

- ``calls``: one row per `Call`, every field (tags and server tool uses as JSON). Times are
  epoch milliseconds (``started_ms``), so range scans are integer comparisons on every engine.
- ``scores``: quality scores, joined to calls by ``call_id`` (they may arrive hours later).
- ``outcomes``: labelled outcomes (schema 4): what a call predicted and, once known, what was
  true, by ``call_id``, for calls used as classifiers or scorers. ``kind`` says which columns
  hold the pair: ``class`` the labels (``predicted``, ``actual``, and ``probability``, the
  model's confidence in its predicted label, when given), ``number`` the values
  (``predicted_value``, ``actual_value``). ``name`` is the task, so one call can be judged on
  several label sets.
- ``contents``: the prompt and answer of a call, kept only when content capture is on (schema
  4), after redaction, with a retention of their own (by ``started_ms``, the call's start).
- ``rollups``: per minute, hour and day (``granularity`` in seconds), per low-cardinality key
  (provider, model, operation, feature, team, environment, prompt version, status, error type):
  counts, sums and quantile sketches (`aivitals.store.sketch`). Queries answer from these when
  they can, so their cost follows the number of keys and buckets, not the number of calls.
  Users are not a key of ``rollups`` (their cardinality would multiply every other key's).
- ``user_rollups``: per hour and day, per (user, provider, model), the same sums and sketches
  as ``rollups`` (schema 8, `aivitals.store.user_rollup`): what the top users and one user's
  figures read. No minutes: a row per user and model a minute would be about a row per call.
  ``user_score_rollups``: the scores the same way, as ``score_rollups`` keeps them (schema 8).
- ``model_rollups``: per minute, hour and day, per (provider, model), the same sums and
  sketches as ``rollups`` (schema 9, `aivitals.store.model_rollup`): what the unfiltered
  summary, the time series and the per-model report read, a few rows a bucket instead of one
  per key. ``skipped_rows`` and ``skipped_sketches`` count the ``rollups`` rows an older writer
  left out of range that the upgrade did not fold in, as reads of ``rollups`` count them.
- ``score_rollups``: per minute, hour and day, per the call's rollup key (its dimensions as
  ``rollups`` has them, bucketed by the CALL's start, as quality counts a score with its call),
  score name and source: the sum, sum of squares and count of the usable values, and how many
  were left out as out of range (schema 6, `aivitals.store.score_rollup`).
- ``baselines``: pinned reference periods for drift (schema 5), by name: ``aivitals baseline
  pin --name before-upgrade --since ... --until ...`` (`aivitals.store.baselines`).
- ``leases``: leader leases (schema 7, `aivitals.store.leases`), by name: which process holds
  it until when, and what the holder last published (the alert engine's state, for the workers
  and replicas that do not evaluate); ``lease_inbox``: what the others ask of the holder (a
  silence posted to a follower), taken by the holder in order.
- ``meta``: the schema version, and a marker that says the file is an aivitals store.

Money: each call keeps its exact decimal cost as text (``cost_usd``); sums use ``cost_nusd``,
the cost in integer nano-dollars (1e-9 USD, rounded half-even per call), which every engine adds
exactly.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)

SCHEMA_VERSION = 9
STORE_MARKER = "aivitals-store"

GRANULARITIES = (60, 3600, 86400)
"""Rollup bucket widths in seconds: minute, hour, day (UTC-aligned)."""

ROLLUP_KEYS = (
    "provider",
    "model",
    "operation",
    "feature",
    "team",
    "environment",
    "prompt_version",
    "status",
    "error_type",
)
"""The dimensions rollups are kept by; absent values are stored as ''."""

USER_GRANULARITIES = (3600, 86400)
"""The bucket widths of ``user_rollups``: hour and day."""

USER_ROLLUP_KEYS = ("user", "provider", "model")
"""The dimensions ``user_rollups`` are kept by; absent values are stored as ''."""

MODEL_ROLLUP_KEYS = ("provider", "model")
"""The dimensions ``model_rollups`` are kept by (at every rollup granularity)."""

metadata = MetaData()

calls = Table(
    "calls",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("started_ms", BigInteger, nullable=False),
    Column("trace_id", String(32)),
    Column("span_id", String(16)),
    Column("parent_span_id", String(16)),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float),
    Column("queue_ms", Float),
    Column("provider", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("response_model", String(200)),
    Column("operation", String(32), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cached_input_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    # Added by schema 3: a default so rows of older stores read as "no 1-hour writes".
    Column("cache_write_1h_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("server_tool_uses", Text),
    Column("tokens_estimated", Boolean, nullable=False),
    Column("cost_usd", String(40)),
    Column("cost_nusd", BigInteger),
    Column("input_cost_usd", String(40)),
    Column("output_cost_usd", String(40)),
    Column("price_source", String(200)),
    Column("service_tier", String(32)),
    Column("saved_usd", String(40)),
    Column("status", String(16), nullable=False),
    Column("error_type", String(32)),
    Column("error_message", Text),
    Column("http_status", SmallInteger),
    Column("finish_reason", String(32)),
    Column("cache", String(8)),
    Column("cache_level", String(8)),
    Column("context_window", Integer),
    Column("user", String(200)),
    Column("feature", String(200)),
    Column("team", String(200)),
    Column("endpoint", String(200)),
    Column("prompt_version", String(200)),
    Column("environment", String(64)),
    Column("quantization", String(32)),
    Column("tags", Text),
)
Index("ix_calls_started", calls.c.started_ms)
Index("ix_calls_model_started", calls.c.model, calls.c.started_ms)
Index("ix_calls_user_started", calls.c.user, calls.c.started_ms)

scores = Table(
    "scores",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("call_id", String(36), nullable=False),
    Column("name", String(200), nullable=False),
    Column("value", Float, nullable=False),
    Column("normalised", Float, nullable=False),
    Column("min_value", Float, nullable=False),
    Column("max_value", Float, nullable=False),
    Column("source", String(64), nullable=False),
    Column("comment", Text),
    Column("created_ms", BigInteger, nullable=False),
    Column("model", String(200)),
    Column("feature", String(200)),
)
Index("ix_scores_call", scores.c.call_id)
Index("ix_scores_created", scores.c.created_ms)

outcomes = Table(
    "outcomes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("call_id", String(36), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("predicted", String(200)),
    Column("actual", String(200)),
    Column("probability", Float),
    Column("predicted_value", Float),
    Column("actual_value", Float),
    Column("source", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("model", String(200)),
    Column("feature", String(200)),
)
Index("ix_outcomes_call", outcomes.c.call_id)
Index("ix_outcomes_created", outcomes.c.created_ms)

contents = Table(
    "contents",
    metadata,
    Column("call_id", String(36), primary_key=True),
    Column("started_ms", BigInteger, nullable=False),
    Column("messages", Text),  # JSON: [{"role": ..., "text": ...}, ...]
    Column("output_text", Text),
    Column("tool_calls", Text),  # JSON
    Column("redactions", Integer, nullable=False, server_default=text("0")),
)
Index("ix_contents_started", contents.c.started_ms)

rollups = Table(
    "rollups",
    metadata,
    Column("granularity", Integer, nullable=False),
    Column("bucket_start", BigInteger, nullable=False),  # epoch seconds, a multiple of granularity
    *(Column(name, String(200), nullable=False) for name in ROLLUP_KEYS),
    Column("calls", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("cancelled", BigInteger, nullable=False),
    Column("unpriced", BigInteger, nullable=False),
    Column("cost_nusd", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cached_input_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("cache_hits", BigInteger, nullable=False),
    Column("cache_lookups", BigInteger, nullable=False),
    Column("latency_sum_ms", Float, nullable=False),
    Column("ttft_count", BigInteger, nullable=False),
    Column("ttft_sum_ms", Float, nullable=False),
    # Output tokens per second: summed over the calls that have a speed, for a mean.
    Column("speed_count", BigInteger, nullable=False),
    Column("speed_sum", Float, nullable=False),
    Column("latency_sketch", LargeBinary, nullable=False),
    Column("ttft_sketch", LargeBinary, nullable=False),
    PrimaryKeyConstraint("granularity", "bucket_start", *ROLLUP_KEYS, name="pk_rollups"),
)


def _rollup_measures() -> list[Column[Any]]:
    """The sums and sketches of ``rollups``, column for column, so one reader reads every
    rollup table."""
    return [
        Column(column.name, column.type, nullable=False)
        for column in rollups.columns
        if column.name not in ("granularity", "bucket_start", *ROLLUP_KEYS)
    ]


user_rollups = Table(
    "user_rollups",
    metadata,
    Column("granularity", Integer, nullable=False),
    Column("bucket_start", BigInteger, nullable=False),
    *(Column(name, String(200), nullable=False) for name in USER_ROLLUP_KEYS),
    *_rollup_measures(),
    PrimaryKeyConstraint("granularity", "bucket_start", *USER_ROLLUP_KEYS, name="pk_user_rollups"),
)

model_rollups = Table(
    "model_rollups",
    metadata,
    Column("granularity", Integer, nullable=False),
    Column("bucket_start", BigInteger, nullable=False),
    *(Column(name, String(200), nullable=False) for name in MODEL_ROLLUP_KEYS),
    *_rollup_measures(),
    # ``rollups`` rows the schema-9 upgrade left out (0 for every row this version folds):
    # whole rows whose sums are out of range, and rows whose sums were folded but whose
    # sketches were not. Two counts, because reads count the second only with percentiles.
    Column("skipped_rows", BigInteger, nullable=False, server_default=text("0")),
    Column("skipped_sketches", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint(
        "granularity", "bucket_start", *MODEL_ROLLUP_KEYS, name="pk_model_rollups"
    ),
)

score_rollups = Table(
    "score_rollups",
    metadata,
    Column("granularity", Integer, nullable=False),
    Column("bucket_start", BigInteger, nullable=False),  # epoch seconds of the call's start
    *(Column(name, String(200), nullable=False) for name in ROLLUP_KEYS),
    Column("name", String(200), nullable=False),
    Column("source", String(64), nullable=False),
    Column("value_sum", Float, nullable=False),
    Column("value_squares", Float, nullable=False),
    Column("value_count", BigInteger, nullable=False),
    # Out-of-range values (a store older than the limits): counted, never summed.
    Column("skipped", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "granularity", "bucket_start", *ROLLUP_KEYS, "name", "source", name="pk_score_rollups"
    ),
)

user_score_rollups = Table(
    "user_score_rollups",
    metadata,
    Column("granularity", Integer, nullable=False),
    Column("bucket_start", BigInteger, nullable=False),  # epoch seconds of the call's start
    *(Column(name, String(200), nullable=False) for name in USER_ROLLUP_KEYS),
    Column("name", String(200), nullable=False),
    Column("source", String(64), nullable=False),
    Column("value_sum", Float, nullable=False),
    Column("value_squares", Float, nullable=False),
    Column("value_count", BigInteger, nullable=False),
    Column("skipped", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "granularity",
        "bucket_start",
        *USER_ROLLUP_KEYS,
        "name",
        "source",
        name="pk_user_score_rollups",
    ),
)

baselines = Table(
    "baselines",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("since_ms", BigInteger, nullable=False),
    Column("until_ms", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("snapshot", Text),
    Column("snapshot_ms", BigInteger),
)

lease_inbox = Table(
    "lease_inbox",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)
Index("ix_lease_inbox_name", lease_inbox.c.name, lease_inbox.c.created_ms)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
)
