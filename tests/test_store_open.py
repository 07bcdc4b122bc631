"""Opening a store: creation, upgrades, and the one-line errors for what cannot be opened."""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy

from aivitals.model import Score
from aivitals.store import engine as store_engine
from aivitals.store import migrations, schema
from aivitals.store.errors import StoreError
from aivitals.store.rows import readable_call
from aivitals.store.sql import SqlStore

from .support.helpers import make_call


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "aivitals.db"


def meta_of(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as connection:
        return dict(connection.execute("SELECT key, value FROM meta").fetchall())


LATEST = str(schema.SCHEMA_VERSION)
NEXT = schema.SCHEMA_VERSION + 1


def test_the_code_knows_the_schema_it_describes() -> None:
    assert migrations.latest_version(migrations.STEPS) == schema.SCHEMA_VERSION


def test_a_new_store_is_created_with_its_directory_and_marker(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "aivitals.db"
    SqlStore.open(path).close()
    assert meta_of(path) == {"marker": "aivitals-store", "schema_version": LATEST}
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # Opening again finds it up to date and changes nothing.
    SqlStore.open(f"sqlite:///{path}").close()
    assert meta_of(path)["schema_version"] == LATEST


def test_a_version_1_store_gains_saved_usd_and_keeps_its_calls(db: Path) -> None:
    store = SqlStore.open(db)
    store.write([make_call(), make_call()], [])
    store.close()
    # Turn it back into what aivitals 0.1 wrote: none of the later columns, schema 1.
    with sqlite3.connect(db) as connection:
        for column in ("saved_usd", *SCHEMA_3_COLUMNS):
            connection.execute(f"ALTER TABLE calls DROP COLUMN {column}")
        drop_schema_4_tables(connection)
        connection.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")

    store = SqlStore.open(db)
    store.write([make_call(saved_usd=Decimal("0.25"), cost_usd=Decimal(0))], [])
    store.close()

    assert meta_of(db)["schema_version"] == LATEST
    with sqlite3.connect(db) as connection:
        saved = connection.execute("SELECT saved_usd FROM calls ORDER BY saved_usd").fetchall()
    assert saved == [(None,), (None,), ("0.25",)]


SCHEMA_3_COLUMNS = ("cache_write_1h_tokens", "server_tool_uses", "service_tier", "quantization")
SCHEMA_4_TABLES = ("outcomes", "contents")


def drop_schema_4_tables(connection: sqlite3.Connection) -> None:
    for table in SCHEMA_4_TABLES:
        connection.execute(f"DROP TABLE {table}")  # its indexes go with it


def test_a_version_2_store_gains_the_billing_detail_and_reads_its_old_calls(db: Path) -> None:
    store = SqlStore.open(db)
    old = make_call(cache_write_tokens=10, input_tokens=100)
    store.write([old], [])
    store.close()
    # What aivitals wrote before issue 16: no 1-hour writes, tool uses, tier or quantisation.
    with sqlite3.connect(db) as connection:
        for column in SCHEMA_3_COLUMNS:
            connection.execute(f"ALTER TABLE calls DROP COLUMN {column}")
        drop_schema_4_tables(connection)
        connection.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")

    new = make_call(
        input_tokens=3000,
        cache_write_tokens=2000,
        cache_write_1h_tokens=1500,
        server_tool_uses={"web_search": 3},
        service_tier="priority",
        quantization="q4_K_M",
    )
    store = SqlStore.open(db)
    store.write([new], [])
    with store.engine.connect() as connection:
        rows = connection.execute(sqlalchemy.select(schema.calls)).all()
    store.close()
    read = {call.id: call for call in map(readable_call, rows) if call is not None}

    assert meta_of(db)["schema_version"] == LATEST
    assert (read[old.id].cache_write_1h_tokens, read[old.id].server_tool_uses) == (0, {})
    assert (read[old.id].service_tier, read[old.id].quantization) == (None, None)
    back = read[new.id]
    assert (back.cache_write_1h_tokens, back.server_tool_uses) == (1500, {"web_search": 3})
    assert (back.service_tier, back.quantization) == ("priority", "q4_K_M")


def test_a_version_3_store_gains_the_outcomes_and_contents_tables(db: Path) -> None:
    store = SqlStore.open(db)
    old = make_call()
    store.write([old], [Score(call_id=old.id, name="helpful", value=0.5)])
    store.close()
    # What aivitals wrote before issue 13: neither table, schema 3.
    with sqlite3.connect(db) as connection:
        drop_schema_4_tables(connection)
        connection.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        assert not {"outcomes", "contents"} & tables_of(connection)

    store = SqlStore.open(db)
    store.close()

    assert meta_of(db)["schema_version"] == LATEST
    with sqlite3.connect(db) as connection:
        assert {"outcomes", "contents"} <= tables_of(connection)
        indexes = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert {"ix_outcomes_call", "ix_outcomes_created", "ix_contents_started"} <= indexes
        contents = {row[1]: row for row in connection.execute("PRAGMA table_info(contents)")}
        assert list(contents) == [
            "call_id",
            "started_ms",
            "messages",
            "output_text",
            "tool_calls",
            "redactions",
        ]
        assert contents["call_id"][5] == 1  # the primary key
        outcome_columns = [row[1] for row in connection.execute("PRAGMA table_info(outcomes)")]
        assert outcome_columns == [column.name for column in schema.outcomes.columns]
        # The rows of schema 3 are all still there.
        assert connection.execute("SELECT id FROM calls").fetchall() == [(old.id,)]
        assert connection.execute("SELECT name, value FROM scores").fetchall() == [("helpful", 0.5)]
        # And the new tables take rows.
        connection.execute(
            "INSERT INTO contents (call_id, started_ms, messages) VALUES (?, 1, '[]')", (old.id,)
        )
        assert connection.execute("SELECT redactions FROM contents").fetchall() == [(0,)]


def tables_of(connection: sqlite3.Connection) -> set[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row[0] for row in rows}


def add_region(connection: sqlalchemy.Connection) -> None:
    connection.execute(sqlalchemy.text("ALTER TABLE calls ADD COLUMN region VARCHAR(32)"))
    connection.execute(sqlalchemy.text("UPDATE calls SET region = 'eu'"))


def test_an_older_store_is_upgraded_without_losing_rows(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlStore.open(db)
    store.write([make_call(), make_call()], [])
    store.close()

    runs: list[int] = []

    def step(connection: sqlalchemy.Connection) -> None:
        runs.append(1)
        add_region(connection)

    monkeypatch.setattr(migrations, "STEPS", (*migrations.STEPS, (NEXT, step)))
    SqlStore.open(db).close()
    SqlStore.open(db).close()  # already upgraded: the step does not run again

    assert runs == [1]
    assert meta_of(db)["schema_version"] == str(NEXT)
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT region, count(*) FROM calls").fetchall() == [("eu", 2)]


def test_a_failed_upgrade_leaves_the_store_as_it_was(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlStore.open(db)
    store.write([make_call()], [])
    store.close()

    def broken(connection: sqlalchemy.Connection) -> None:
        raise RuntimeError("no space for the new index")

    monkeypatch.setattr(
        migrations, "STEPS", (*migrations.STEPS, (NEXT, add_region), (NEXT + 1, broken))
    )
    with pytest.raises(StoreError) as error:
        SqlStore.open(db)
    assert str(error.value) == (
        f"upgrading {db} from schema {NEXT} to {NEXT + 1} failed (no space for the new index); "
        "the store is unchanged: please report this"
    )
    assert meta_of(db)["schema_version"] == LATEST
    with sqlite3.connect(db) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(calls)")]
        assert "region" not in columns
        assert connection.execute("SELECT count(*) FROM calls").fetchone() == (1,)


def test_a_store_from_a_newer_aivitals_is_refused(db: Path) -> None:
    SqlStore.open(db).close()
    with sqlite3.connect(db) as connection:
        connection.execute(f"UPDATE meta SET value = '{NEXT}' WHERE key = 'schema_version'")
    with pytest.raises(StoreError) as error:
        SqlStore.open(db)
    assert str(error.value) == (
        f"{db} was written by a newer aivitals (schema {NEXT}, this one knows {LATEST}): "
        "upgrade aivitals"
    )


@pytest.mark.parametrize("meta_table", [False, True])
def test_a_foreign_sqlite_file_is_refused(db: Path, meta_table: bool) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE users (id INTEGER)")
        connection.execute("CREATE TABLE orders (id INTEGER)")
        if meta_table:
            connection.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    tables = "meta, orders, users" if meta_table else "orders, users"
    with pytest.raises(StoreError) as error:
        SqlStore.open(db)
    assert str(error.value) == (
        f"{db} is not an aivitals store (it has tables: {tables}); "
        "point at a new file or an aivitals database"
    )


def test_a_file_that_is_not_a_database_is_refused(db: Path) -> None:
    db.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError) as error:
        SqlStore.open(db)
    assert str(error.value) == (
        f"{db} is not a SQLite database (corrupted, or a file of another kind); "
        "point at an aivitals database or a new file"
    )
    assert db.read_text().startswith("these are my notes")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (":memory:", "an in-memory database vanishes"),
        ("sqlite://", "is an in-memory database"),
        ("mysql://u@h/db", "the store runs on SQLite or PostgreSQL, not mysql"),
        ("postgresql+nodriver://u:secret@h/db", "postgresql+nodriver://u:***@h/db"),
    ],
)
def test_targets_that_cannot_be_a_store(target: str, message: str) -> None:
    with pytest.raises(StoreError, match=r"^[^\n]*$") as error:
        SqlStore.open(target)
    assert message in str(error.value)
    assert "secret" not in str(error.value)


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as error:
        SqlStore.open(tmp_path)
    assert str(error.value) == (
        f"{tmp_path} is a directory; point at a file inside it, such as {tmp_path / 'aivitals.db'}"
    )


def test_a_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # psycopg is in the test extra: hide it (a None in sys.modules makes `import psycopg`
    # raise ImportError), as on a machine without the postgresql extra.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StoreError) as error:
        SqlStore.open("postgresql+psycopg://aivitals:secret@127.0.0.1:1/aivitals")
    assert "pip install 'psycopg[binary]'" in str(error.value)
    assert "secret" not in str(error.value)


def statements_of(store: SqlStore) -> list[str]:
    """A list that fills with every SQL statement the store's engine sends from now on."""
    seen: list[str] = []

    def record(*args: object) -> None:
        seen.append(str(args[2]))

    sqlalchemy.event.listen(store.engine, "before_cursor_execute", record)
    return seen


def test_writes_take_the_lock_up_front_and_reads_do_not(db: Path) -> None:
    store = SqlStore.open(db)
    seen = statements_of(store)
    store.write([make_call()], [])
    assert seen[0] == "BEGIN IMMEDIATE"
    seen.clear()
    with store.engine.connect() as connection:
        connection.execute(sqlalchemy.select(schema.calls.c.id))
    assert seen[0] == "BEGIN"
    store.close()


def test_a_writer_held_up_too_long_gets_a_retryable_error(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_engine, "BUSY_TIMEOUT_S", 0.2)
    store = SqlStore.open(db)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError) as error:
            store.write([make_call()], [])
        with pytest.raises(StoreError):
            store.delete_calls_before(datetime.now(UTC))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert error.value.retryable
    assert str(error.value) == (
        f"writing to {db}: another process held the write lock for over 0.2 s; it is retried later"
    )
    store.write([make_call()], [])  # and once the lock is free, the write goes through
    store.close()


def test_a_version_5_store_gains_score_rollups_backfilled_from_its_scores(db: Path) -> None:
    store = SqlStore.open(db)
    first, second = make_call(model="gpt-4o"), make_call(model="gpt-4o-mini", feature="chat")
    store.write(
        [first, second],
        [
            Score(call_id=first.id, name="refusal", value=1.0, source="evaluator"),
            Score(call_id=first.id, name="refusal", value=0.0, source="evaluator"),
            Score(call_id=second.id, name="helpful", value=0.5),
            Score(call_id="never-stored", name="helpful", value=0.25),  # no call: no bucket
        ],
    )
    store.close()
    # What aivitals wrote before score rollups: schema 5, no such table.
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE score_rollups")
        connection.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")

    SqlStore.open(db).close()

    assert meta_of(db)["schema_version"] == LATEST
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT granularity, model, feature, name, source, value_sum, value_squares, "
            "value_count, skipped FROM score_rollups ORDER BY granularity, model, name"
        ).fetchall()
    assert rows == [
        (granularity, model, feature, name, source, total, squares, count, 0)
        for granularity in (60, 3600, 86400)
        for model, feature, name, source, total, squares, count in (
            ("gpt-4o", "", "refusal", "evaluator", 1.0, 1.0, 2),
            ("gpt-4o-mini", "chat", "helpful", "api", 0.5, 0.25, 1),
        )
    ]
