"""Pinned baselines in the store: schema 5's ``baselines`` table, its upgrade, and its CRUD."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aivitals.store import schema
from aivitals.store.baselines import Pin, delete_pin, find_pin, list_pins, pin
from aivitals.store.sql import SqlStore
from tests.support.helpers import make_call


def test_a_version_4_store_gains_the_baselines_table_and_keeps_its_calls(tmp_path: Path) -> None:
    db = tmp_path / "aivitals.db"
    store = SqlStore.open(db)
    store.write([make_call()], [])
    store.close()
    # What aivitals wrote before issue 14: schema 4, no baselines table.
    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE baselines")
        connection.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")

    store = SqlStore.open(db)
    try:
        pin(store.engine, "before-upgrade", 1_000, 2_000, now_ms=3_000)
        assert list_pins(store.engine) == [Pin("before-upgrade", 1_000, 2_000, 3_000)]
    finally:
        store.close()
    with sqlite3.connect(db) as connection:
        version = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'")
        assert version.fetchone() == (str(schema.SCHEMA_VERSION),)
        assert connection.execute("SELECT count(*) FROM calls").fetchone() == (1,)
        columns = [row[1] for row in connection.execute("PRAGMA table_info(baselines)")]
        assert columns == ["name", "since_ms", "until_ms", "created_ms"]


def test_pinning_again_replaces_and_delete_says_whether_there_was_one(store_target: str) -> None:
    store = SqlStore.open(store_target)
    try:
        pin(store.engine, "a", 1, 2, now_ms=10)
        pin(store.engine, "b", 5, 9, now_ms=11)
        pin(store.engine, "a", 3, 4, now_ms=12)
        assert [p.name for p in list_pins(store.engine)] == ["a", "b"]
        assert find_pin(store.engine, "a") == Pin("a", 3, 4, 12)
        assert delete_pin(store.engine, "a") is True
        assert delete_pin(store.engine, "a") is False
        assert find_pin(store.engine, "a") is None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("name", "since", "until", "message"),
    [
        ("a b", 1, 2, "cannot use 'a b'"),
        ("", 1, 2, "cannot use ''"),
        ("-x", 1, 2, "cannot use '-x'"),
        ("x" * 201, 1, 2, "at most 200"),
        ("ok", 2, 2, "--until must be after its --since"),
    ],
)
def test_bad_pins_are_refused_saying_why(
    store_target: str, name: str, since: int, until: int, message: str
) -> None:
    store = SqlStore.open(store_target)
    try:
        with pytest.raises(ValueError, match=message):
            pin(store.engine, name, since, until, now_ms=0)
        assert list_pins(store.engine) == []
    finally:
        store.close()
