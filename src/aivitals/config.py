"""Every ``AIVITALS_*`` environment variable is read here, and nowhere else.

| variable | meaning | default |
| --- | --- | --- |
| ``AIVITALS_DISABLED`` | ``1``/``true``: record nothing (a kill switch for production) | off |
| ``AIVITALS_PRICE_OVERRIDES`` | path of a TOML or YAML price override file | none |
| ``AIVITALS_LOG`` | ``stderr``, ``stdout`` or a file path: one JSON line per call | off |
| ``AIVITALS_METRICS_PORT`` | serve Prometheus ``/metrics`` from the app on this port | off |
| ``AIVITALS_ENVIRONMENT`` | default ``environment`` attribution (``prod``, ``staging``...) | none |
| ``AIVITALS_TIMEZONE`` | IANA zone where budget days and months begin | ``UTC`` |
| ``AIVITALS_STORE`` | the store: a SQLite file path or a SQLAlchemy URL | ``./aivitals.db`` for the CLI; none for the SDK |
| ``AIVITALS_STORE_WRITER`` | ``thread``, ``process`` or ``auto``: where the store's writes run, the SDK's and ``aivitals serve``'s (docs/store.md, "A writer process") | ``auto`` for ``aivitals serve``; ``thread`` for the SDK |
| ``AIVITALS_ENDPOINT`` | send calls and scores to the aivitals server at this URL | off |
| ``AIVITALS_API_KEY`` | the server's API key (sent as ``Authorization: Bearer``) | none |
| ``AIVITALS_SPOOL_DIR`` | where undelivered batches wait for the server | ``~/.cache/aivitals/spool/<hash>`` |
| ``AIVITALS_INGEST_KEY`` | ``aivitals serve`` asks for it on the ingest API (the SDK sends ``AIVITALS_API_KEY``) | none |
| ``AIVITALS_DASHBOARD_TOKEN`` | ``aivitals serve`` asks for it on the dashboard and read API | none |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(ValueError):
    """A setting cannot be used; the message names it and says what would work."""


@dataclass(frozen=True, slots=True)
class EnvSettings:
    disabled: bool = False
    price_overrides: str | None = None
    log: str | None = None
    metrics_port: int | None = None
    environment: str | None = None
    timezone: str = "UTC"
    store: str | None = None
    store_writer: str | None = None  # unset: each entry point has its own default
    endpoint: str | None = None
    api_key: str | None = None
    spool_dir: str | None = None
    dashboard_token: str | None = None
    ingest_key: str | None = None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def read_env(environ: Mapping[str, str] | None = None) -> EnvSettings:
    """Read and check the ``AIVITALS_*`` variables (``os.environ`` unless given)."""
    env = os.environ if environ is None else environ
    disabled_raw = env.get("AIVITALS_DISABLED", "").strip().lower()
    if disabled_raw not in _TRUE | _FALSE:
        raise ConfigError(f"AIVITALS_DISABLED must be 1/true or 0/false, got {disabled_raw!r}")
    port_raw = env.get("AIVITALS_METRICS_PORT", "").strip()
    port: int | None = None
    if port_raw:
        if not port_raw.isdigit() or not 0 < int(port_raw) < 65536:
            raise ConfigError(f"AIVITALS_METRICS_PORT must be a port number, got {port_raw!r}")
        port = int(port_raw)
    store_writer = env.get("AIVITALS_STORE_WRITER", "").strip().lower() or None
    if store_writer is not None:
        check_store_writer(store_writer, setting="AIVITALS_STORE_WRITER")
    timezone = env.get("AIVITALS_TIMEZONE", "UTC").strip() or "UTC"
    check_timezone(timezone, setting="AIVITALS_TIMEZONE")
    return EnvSettings(
        disabled=disabled_raw in _TRUE,
        price_overrides=env.get("AIVITALS_PRICE_OVERRIDES") or None,
        log=env.get("AIVITALS_LOG") or None,
        metrics_port=port,
        environment=env.get("AIVITALS_ENVIRONMENT") or None,
        timezone=timezone,
        store=env.get("AIVITALS_STORE") or None,
        store_writer=store_writer,
        endpoint=env.get("AIVITALS_ENDPOINT", "").strip() or None,
        api_key=env.get("AIVITALS_API_KEY", "").strip() or None,
        spool_dir=env.get("AIVITALS_SPOOL_DIR") or None,
        dashboard_token=env.get("AIVITALS_DASHBOARD_TOKEN", "").strip() or None,
        ingest_key=env.get("AIVITALS_INGEST_KEY", "").strip() or None,
    )


STORE_WRITERS = ("thread", "process", "auto")


def check_store_writer(value: object, *, setting: str = "store_writer") -> str:
    """``value`` if it names where the store's writes run, else a `ConfigError` saying what
    would."""
    if value not in STORE_WRITERS:
        raise ConfigError(
            f"{setting} must be 'thread' (in this process), 'process' (a child process writes "
            f"the store) or 'auto' (a child process when there is a core to spare and it "
            f"starts, else the thread), got {value!r}"
        )
    return str(value)


def check_timezone(name: str, *, setting: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"{setting}: unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'"
        ) from exc
