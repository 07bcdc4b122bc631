"""A real PostgreSQL 15 for the tests: started once per session, a fresh database per test.

`PostgresServer` runs ``initdb`` into a directory of its own (owned by the ``postgres`` user when
the tests run as root, since initdb refuses root), starts the server with ``pg_ctl`` on a free
127.0.0.1 port with its socket in that directory and ``fsync=off``, and stops it by its PID at
the end of the session (shared/INFRA.md). Without the binaries or psycopg a test that needs it is
skipped, and fails under CI=true (a skip there would hide a broken install step).

Fixtures (registered for every test module by tests/conftest.py):

- ``postgresql_url``: session-scoped SQLAlchemy URL of a database created for the session
  (``postgresql+psycopg://postgres@127.0.0.1:PORT/aivitals_session``). Shared by every test of
  the session that asks for it: prefer ``postgresql_db_url`` for a clean one.
- ``postgresql_db_url``: function-scoped URL of a fresh, empty database (dropped afterwards).
- ``store_target``: parametrised over ``sqlite`` and ``postgresql``: a SQLite file path or a fresh
  PostgreSQL URL, for ``SqlStore.open``; a contract test taking it runs on both engines.
- ``store_targets`` (function) and ``module_store_targets`` (module): the same parametrisation as
  a `StoreTargets` factory, for tests that need several stores or fill one for a whole module.

No test here; test modules import from it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .realservers import DEFAULT_TIMEOUT_S, free_port, in_ci, poll

BIN_DIRS = ("/usr/lib/postgresql/15/bin",)
"""Where Debian's postgresql-15 puts its binaries (not on PATH)."""

SUPERUSER = "postgres"
SESSION_DATABASE = "aivitals_session"


def _skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def need_postgresql() -> Path:
    """The directory of PostgreSQL 15's binaries; without them (or psycopg), skip, or fail in CI."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _skip_or_fail("psycopg is not installed (pip install 'aivitals[postgresql]')")
    candidates = [os.environ.get("AIVITALS_PG_BINDIR", ""), *BIN_DIRS]
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(found.stdout.strip())
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    _skip_or_fail(
        "PostgreSQL 15 is not installed (Debian package postgresql-15); "
        "run `sudo scripts/install-test-servers postgresql-15` (make test does it when root)"
    )
    raise AssertionError("unreachable")


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, on a free 127.0.0.1 port.

    ``with PostgresServer(need_postgresql()) as pg: pg.url("postgres")``.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # Not under pytest's tmp_path: its parents are mode 0700 and root's, which the postgres
        # user cannot traverse. /tmp keeps the socket path short, too (Unix limit ~107 bytes).
        self.workdir = Path(tempfile.mkdtemp(prefix="aivitals-pg-"))
        self.datadir = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self.port = 0
        self.pid: int | None = None
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            self._run_as = {"user": SUPERUSER, "group": SUPERUSER}
            shutil.chown(self.workdir, SUPERUSER, SUPERUSER)
        self._names = itertools.count(1)

    def _tool(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / name), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=DEFAULT_TIMEOUT_S * 2,
            cwd=self.workdir,
            **self._run_as,
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> PostgresServer:
        done = self._tool(
            "initdb",
            *("-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust"),
            *("-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
        )
        if done.returncode != 0:
            self.cleanup()
            raise RuntimeError(f"initdb failed ({done.returncode}): {done.stderr or done.stdout}")
        for attempt in range(1, 4):
            self.port = free_port()
            options = (
                f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            done = self._tool(
                "pg_ctl",
                *("-D", str(self.datadir), "-l", str(self.log_path), "-w", "-t", "30"),
                *("-o", options, "start"),
            )
            if done.returncode == 0:
                break
            if attempt == 3 or "already in use" not in self.log_tail():
                self.cleanup()
                raise RuntimeError(
                    f"pg_ctl start failed ({done.returncode}): {done.stdout}{done.stderr}; "
                    f"its log ends:\n{self.log_tail()}"
                )
        self.pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
        poll(
            f"PostgreSQL accepting connections on 127.0.0.1:{self.port}",
            self._ready,
            describe=lambda: f"its log ends:\n{self.log_tail()}",
        )
        return self

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def dsn(self, database: str) -> str:
        """A libpq connection string (for psycopg directly)."""
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its name."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            # FILE_COPY from template0: a few milliseconds with fsync off (WAL_LOG, the PG 15
            # default, writes the template through the WAL and is slower for tiny databases).
            connection.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')
        return name

    def drop_database(self, name: str) -> None:
        """Drops ``name``, ending any connection a test left open to it."""
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.pid is not None:
            done = self._tool("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")
            if done.returncode != 0:
                # pg_ctl could not stop it: the postmaster's own PID, then wait for it to go.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGQUIT)
            pid, self.pid = self.pid, None
            poll(f"PostgreSQL (PID {pid}) stopped", lambda: not _alive(pid))
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose; pg_ctl's child is reaped by init, not by us.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (started at the first test that needs it)."""
    with PostgresServer(need_postgresql()) as server:
        yield server


@pytest.fixture(scope="session")
def postgresql_url(postgresql_server: PostgresServer) -> str:
    """The SQLAlchemy URL of a database made for this session (shared by its tests)."""
    import psycopg

    with psycopg.connect(postgresql_server.dsn("postgres"), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{SESSION_DATABASE}" TEMPLATE template0')
    return postgresql_server.url(SESSION_DATABASE)


@pytest.fixture
def postgresql_db_url(postgresql_server: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh, empty database for this test; dropped after it."""
    name = postgresql_server.create_database()
    yield postgresql_server.url(name)
    postgresql_server.drop_database(name)


ENGINES = ("sqlite", "postgresql")


class StoreTargets:
    """Makes fresh, empty stores of one engine: SQLite files, or PostgreSQL databases.

    Call it for each store a test needs (``targets()``, or ``targets("baseline")``); every call
    answers a new place. ``close`` drops the PostgreSQL databases it made.
    """

    def __init__(self, engine: str, directory: Path, server: PostgresServer | None) -> None:
        self.engine = engine
        self.directory = directory
        self.server = server
        self._made: list[str] = []

    def __call__(self, name: str = "store") -> str:
        if self.server is None:
            folder = self.directory / f"{name}-{len(self._made)}"
            folder.mkdir(parents=True, exist_ok=True)
            self._made.append(str(folder))
            return str(folder / "aivitals.db")
        database = self.server.create_database()
        self._made.append(database)
        return self.server.url(database)

    def close(self) -> None:
        if self.server is not None:
            for database in self._made:
                self.server.drop_database(database)
        self._made.clear()


def _targets(request: pytest.FixtureRequest, directory: Path) -> StoreTargets:
    engine: str = request.param
    server = request.getfixturevalue("postgresql_server") if engine == "postgresql" else None
    return StoreTargets(engine, directory, server)


@pytest.fixture(params=ENGINES)
def store_targets(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreTargets]:
    """Fresh stores of one engine per parametrisation (``sqlite``, ``postgresql``) for a test."""
    targets = _targets(request, tmp_path)
    yield targets
    targets.close()


@pytest.fixture(scope="module", params=ENGINES)
def module_store_targets(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StoreTargets]:
    """As ``store_targets``, for module-scoped fixtures that fill a store once for many tests."""
    targets = _targets(request, tmp_path_factory.mktemp("stores"))
    yield targets
    targets.close()


@pytest.fixture
def store_target(store_targets: StoreTargets) -> str:
    """Where a store goes, once per engine: a SQLite file path, or a fresh PostgreSQL URL."""
    return store_targets()
