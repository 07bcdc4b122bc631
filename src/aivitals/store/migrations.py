"""Schema versions: create a new store, upgrade an older one, refuse what is not ours.

The ``meta`` table holds ``marker`` (`STORE_MARKER`) and ``schema_version``. `schema` always
describes the newest schema, which a new store gets in full. A store written by an older aivitals
is brought forward by the steps of `STEPS`, in order, in the same transaction as the check, so a
failed upgrade leaves the store as it was and two processes never upgrade the same store twice.

To change the schema: edit `schema`, raise ``schema.SCHEMA_VERSION`` to N and append
``(N, step)`` to `STEPS`, where ``step`` takes a version N-1 store to version N (add a column,
build an index, backfill) without losing rows. Never edit a step that has shipped.

>>> latest_version(()), latest_version(((2, lambda connection: None),))
(1, 2)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import sqlalchemy

from aivitals.store import model_rollup, schema, score_rollup, user_rollup, user_score_rollup
from aivitals.store.errors import StoreError
from aivitals.store.rollup import SUM_FIELDS

Step = Callable[[sqlalchemy.Connection], None]

PROGRESS_EVERY_S = 5.0
"""A long backfill says how far it is at most this often (and when it ends)."""

logger = logging.getLogger("aivitals.store")

BASE_VERSION = 1
"""The version `schema` had before any step existed."""


def _add_saved_usd(connection: sqlalchemy.Connection) -> None:
    """2: what a response-cache hit saved (the cost of the answer it replayed)."""
    connection.execute(sqlalchemy.text("ALTER TABLE calls ADD COLUMN saved_usd VARCHAR(40)"))


def _add_billing_detail(connection: sqlalchemy.Connection) -> None:
    """3: what a bill needs beyond tokens (issue 16): 1-hour cache writes, server-side tool uses,
    the service tier; and the quantisation of a self-hosted model."""
    for column in (
        "cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0",
        "server_tool_uses TEXT",
        "service_tier VARCHAR(32)",
        "quantization VARCHAR(32)",
    ):
        connection.execute(sqlalchemy.text(f"ALTER TABLE calls ADD COLUMN {column}"))


def _add_outcomes_and_contents(connection: sqlalchemy.Connection) -> None:
    """4: labelled outcomes and captured content (issue 13), two new tables with their indexes.

    Built from `schema` as it is today: were either table ever changed, this step would have to
    spell out its version-4 form instead.
    """
    for table in (schema.outcomes, schema.contents):
        table.create(connection)  # with its indexes


def _add_baselines(connection: sqlalchemy.Connection) -> None:
    """5: pinned drift baselines (issue 14), a table of named periods.

    Spelled out rather than built from `schema`, so a later change to the table cannot change
    what this step does. ``IF NOT EXISTS``: a store rebuilt by hand from a newer one (as the
    upgrade tests do) may hold it already; SQLite and PostgreSQL both read it.
    """
    connection.execute(
        sqlalchemy.text(
            "CREATE TABLE IF NOT EXISTS baselines (name VARCHAR(200) NOT NULL PRIMARY KEY, "
            "since_ms BIGINT NOT NULL, until_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL)"
        )
    )


def _add_score_rollups(connection: sqlalchemy.Connection) -> None:
    """6: score rollups (issue 13), built and backfilled from the stored scores and their calls.

    Built from `schema` as it is today (were the table ever changed, this step would have to
    spell out its version-6 form); ``checkfirst``: a store rebuilt by hand from a newer one (as
    the upgrade tests do) may hold it already, and the backfill rebuilds its rows whole.
    """
    schema.score_rollups.create(connection, checkfirst=True)
    score_rollup.backfill(connection)


def _add_leases(connection: sqlalchemy.Connection) -> None:
    """7: leader leases and their inbox (issue 15), so one alert engine evaluates among
    workers and replicas.

    Spelled out, like step 5, so a later change to the table cannot change this step; ``IF NOT
    EXISTS`` for a store rebuilt by hand from a newer one.
    """
    connection.execute(
        sqlalchemy.text(
            "CREATE TABLE IF NOT EXISTS leases (name VARCHAR(64) NOT NULL PRIMARY KEY, "
            "holder VARCHAR(200) NOT NULL, expires_ms BIGINT NOT NULL, snapshot TEXT, "
            "snapshot_ms BIGINT)"
        )
    )
    connection.execute(
        sqlalchemy.text(
            "CREATE TABLE IF NOT EXISTS lease_inbox (id VARCHAR(36) NOT NULL PRIMARY KEY, "
            "name VARCHAR(64) NOT NULL, body TEXT NOT NULL, created_ms BIGINT NOT NULL)"
        )
    )
    connection.execute(
        sqlalchemy.text(
            "CREATE INDEX IF NOT EXISTS ix_lease_inbox_name ON lease_inbox (name, created_ms)"
        )
    )


def _add_user_rollups(connection: sqlalchemy.Connection) -> None:
    """8: user rollups and user score rollups (issue 17), built and backfilled from the stored
    calls (a day at a time) and scores.

    ``user_rollups`` is spelled out, like step 5, so a later change to the table cannot change
    this step; ``user_score_rollups`` is built from `schema` as step 6 builds its table (were it
    ever changed, this step would have to spell out its version-8 form). ``IF NOT EXISTS`` and
    ``checkfirst`` for a store rebuilt by hand from a newer one (the backfills rebuild the rows
    whole).
    A store of ten million calls takes a few minutes, so the backfill logs how far it is.
    """
    sums, blob = _rollup_sums_ddl(), _blob_ddl(connection)
    connection.execute(
        sqlalchemy.text(
            "CREATE TABLE IF NOT EXISTS user_rollups (granularity INTEGER NOT NULL, "
            'bucket_start BIGINT NOT NULL, "user" VARCHAR(200) NOT NULL, '
            "provider VARCHAR(200) NOT NULL, model VARCHAR(200) NOT NULL, "
            f"{sums}, latency_sketch {blob} NOT NULL, ttft_sketch {blob} NOT NULL, "
            "CONSTRAINT pk_user_rollups PRIMARY KEY "
            '(granularity, bucket_start, "user", provider, model))'
        )
    )
    began = time.monotonic()
    said = [began]

    def progress(done: int, days: int) -> None:
        now = time.monotonic()
        if now - said[0] >= PROGRESS_EVERY_S or done == days:
            said[0] = now
            logger.warning(
                "upgrading to schema 8: user rollups filled for %d of %d days of calls (%.0f s)",
                done,
                days,
                now - began,
            )

    user_rollup.backfill(connection, progress)
    schema.user_score_rollups.create(connection, checkfirst=True)
    user_score_rollup.backfill(connection)


def _rollup_sums_ddl() -> str:
    """The rollups' sum columns as DDL, for the narrow rollup tables' steps (8, 9)."""
    return ", ".join(
        f"{column.name} {'FLOAT' if isinstance(column.type, sqlalchemy.Float) else 'BIGINT'} "
        "NOT NULL"
        for column in schema.rollups.columns
        if column.name in SUM_FIELDS
    )


def _blob_ddl(connection: sqlalchemy.Connection) -> str:
    return "BYTEA" if connection.dialect.name == "postgresql" else "BLOB"


def _add_model_rollups(connection: sqlalchemy.Connection) -> None:
    """9: model rollups (issue 17), filled from the stored ``rollups`` rows (a day at a time).

    From the rollups, not the calls: retention may have deleted the calls behind them, and the
    rows an older writer folded out of range into them are counted in the new rows as reads of
    ``rollups`` count them (`aivitals.store.model_rollup`). Spelled out, like step 5, so a later
    change to the table cannot change this step; ``IF NOT EXISTS`` for a store rebuilt by hand
    from a newer one (the backfill rebuilds the rows whole).
    """
    sums, blob = _rollup_sums_ddl(), _blob_ddl(connection)
    connection.execute(
        sqlalchemy.text(
            "CREATE TABLE IF NOT EXISTS model_rollups (granularity INTEGER NOT NULL, "
            "bucket_start BIGINT NOT NULL, provider VARCHAR(200) NOT NULL, "
            f"model VARCHAR(200) NOT NULL, {sums}, latency_sketch {blob} NOT NULL, "
            f"ttft_sketch {blob} NOT NULL, skipped_rows BIGINT NOT NULL DEFAULT 0, "
            "skipped_sketches BIGINT NOT NULL DEFAULT 0, "
            "CONSTRAINT pk_model_rollups PRIMARY KEY (granularity, bucket_start, provider, model))"
        )
    )
    model_rollup.backfill(connection, _progress("model rollups", 9))


def _progress(what: str, version: int) -> model_rollup.Progress:
    """A backfill's progress, logged at most every `PROGRESS_EVERY_S` and at the end."""
    began = time.monotonic()
    said = [began]

    def progress(done: int, days: int) -> None:
        now = time.monotonic()
        if now - said[0] >= PROGRESS_EVERY_S or done == days:
            said[0] = now
            logger.warning(
                "upgrading to schema %d: %s filled for %d of %d days (%.0f s)",
                version,
                what,
                done,
                days,
                now - began,
            )

    return progress


STEPS: Sequence[tuple[int, Step]] = (
    (2, _add_saved_usd),
    (3, _add_billing_detail),
    (4, _add_outcomes_and_contents),
    (5, _add_baselines),
    (6, _add_score_rollups),
    (7, _add_leases),
    (8, _add_user_rollups),
    (9, _add_model_rollups),
)
"""(version, step) pairs in increasing version order; each step upgrades version - 1 to version."""

_LISTED_TABLES = 5


def latest_version(steps: Sequence[tuple[int, Step]]) -> int:
    """The schema version that code with these ``steps`` writes."""
    return steps[-1][0] if steps else BASE_VERSION


def read_version(connection: sqlalchemy.Connection, *, where: str) -> int | None:
    """The schema version of the store behind ``connection``; None for an empty database.

    Raises `StoreError` when the database holds tables but is not an aivitals store.
    """
    inspector = sqlalchemy.inspect(connection)
    tables = set(inspector.get_table_names())
    if not tables:
        return None
    ours = "meta" in tables and {"key", "value"} <= {
        column["name"] for column in inspector.get_columns("meta")
    }
    return _stored_version(connection, tables, ours=ours, where=where)


def prepare_schema(
    connection: sqlalchemy.Connection,
    *,
    where: str,
    steps: Sequence[tuple[int, Step]] | None = None,
) -> int:
    """Make the database behind ``connection`` an up-to-date store; return its schema version.

    Runs inside the caller's write transaction. ``steps`` defaults to `STEPS`.
    """
    steps = STEPS if steps is None else steps
    latest = latest_version(steps)
    version = read_version(connection, where=where)
    if version is None:
        schema.metadata.create_all(connection)
        connection.execute(
            schema.meta.insert(),
            [
                {"key": "marker", "value": schema.STORE_MARKER},
                {"key": "schema_version", "value": str(latest)},
            ],
        )
        return latest
    check_not_newer(version, latest, where=where)
    for step_version, step in steps:
        if step_version <= version:
            continue
        try:
            step(connection)
        except Exception as exc:
            raise StoreError(
                f"upgrading {where} from schema {step_version - 1} to {step_version} failed "
                f"({exc}); the store is unchanged: please report this"
            ) from exc
        connection.execute(
            schema.meta.update()
            .where(schema.meta.c.key == "schema_version")
            .values(value=str(step_version))
        )
        version = step_version
    return version


def check_not_newer(version: int, latest: int, *, where: str) -> None:
    if version > latest:
        raise StoreError(
            f"{where} was written by a newer aivitals (schema {version}, this one knows "
            f"{latest}): upgrade aivitals"
        )


def _stored_version(
    connection: sqlalchemy.Connection, tables: set[str], *, ours: bool, where: str
) -> int:
    stored: dict[str, str] = {}
    if ours:  # a "meta" table with our columns; the marker row says whether it is ours
        rows = connection.execute(sqlalchemy.select(schema.meta.c.key, schema.meta.c.value))
        stored = {key: value for key, value in rows}
    if stored.get("marker") != schema.STORE_MARKER:
        names = sorted(tables)
        listed = ", ".join(names[:_LISTED_TABLES])
        if len(names) > _LISTED_TABLES:
            listed += f" and {len(names) - _LISTED_TABLES} more"
        raise StoreError(
            f"{where} is not an aivitals store (it has tables: {listed}); "
            "point at a new file or an aivitals database"
        )
    raw = stored.get("schema_version", "")
    if not raw.isdigit():
        raise StoreError(
            f"{where} is an aivitals store with an unreadable schema version ({raw!r}); "
            "restore it from a backup or point at a new file"
        )
    return int(raw)
