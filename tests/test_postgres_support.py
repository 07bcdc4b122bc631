"""The test PostgreSQL: a real server, a fresh empty database per test, SqlStore on it."""

from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa

from aivitals.store.sql import SqlStore

from .support import postgres
from .support.postgres import PostgresServer


def test_each_test_gets_an_empty_database_of_its_own(
    postgresql_server: PostgresServer, postgresql_db_url: str
) -> None:
    engine = sa.create_engine(postgresql_db_url)
    with engine.connect() as connection:
        version = connection.scalar(sa.text("SHOW server_version"))
        tables = connection.scalar(
            sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
        )
        database = connection.scalar(sa.text("SELECT current_database()"))
    engine.dispose()
    assert str(version).startswith("15.")
    assert tables == 0
    assert database != "postgres"
    assert postgresql_server.pid is not None


def test_a_store_opens_on_it_and_creates_its_schema(postgresql_db_url: str) -> None:
    store = SqlStore.open(postgresql_db_url)
    try:
        assert store.engine.dialect.name == "postgresql"
        assert "calls" in sa.inspect(store.engine).get_table_names()
    finally:
        store.close()


def test_store_target_names_each_engine(store_target: str) -> None:
    store = SqlStore.open(store_target)
    try:
        expected = "postgresql" if store_target.startswith("postgresql") else "sqlite"
        assert store.engine.dialect.name == expected
    finally:
        store.close()


def test_the_session_database_is_reachable(postgresql_url: str) -> None:
    engine = sa.create_engine(postgresql_url)
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT current_database()")) == "aivitals_session"
    engine.dispose()


def _without_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "BIN_DIRS", ())
    monkeypatch.delenv("AIVITALS_PG_BINDIR", raising=False)
    monkeypatch.setattr(shutil, "which", lambda _name: None)


def test_without_postgresql_a_test_is_skipped_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_postgresql(monkeypatch)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="postgresql-15"):
        postgres.need_postgresql()


def test_without_postgresql_a_test_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_postgresql(monkeypatch)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: PostgreSQL 15 is not installed"):
        postgres.need_postgresql()
