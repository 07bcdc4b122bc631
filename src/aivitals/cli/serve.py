"""``aivitals serve``: the gateway, the ingest and read API, /metrics and health checks, on one port."""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aivitals.cli.app import app, fail
from aivitals.config import ConfigError, check_store_writer, read_env

if TYPE_CHECKING:
    from aivitals.gateway.budgets import BudgetLedger
    from aivitals.gateway.config import GatewayConfig
    from aivitals.gateway.proxy import Gateway
    from aivitals.otlp.mapping import AttributeMap
    from aivitals.otlp.receive import OtlpReceiver
    from aivitals.recorder import Recorder
    from aivitals.shared import SharedState

DEFAULT_STORE = "./aivitals.db"
# Calls waiting for the store before ingest answers 503 instead of dropping any.
QUEUE_LIMIT = 50_000


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port to listen on (0: any free port).", min=0, max=65535)
    ] = 8700,
    upstream: Annotated[
        str | None,
        typer.Option(
            help="Quick start: proxy /v1/... to this OpenAI-compatible base URL (e.g. "
            "https://api.openai.com/v1), passing each client's own API key through.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The gateway's TOML or YAML file: upstreams, keys, limits, budgets, cache "
            "(docs/gateway.md).",
            show_default=False,
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="The store: a SQLite file (created if missing) or a SQLAlchemy URL. "
            "Default: $AIVITALS_STORE or ./aivitals.db.",
            show_default=False,
        ),
    ] = None,
    no_db: Annotated[
        bool, typer.Option("--no-db", help="Keep no store: metrics only, no history to read.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            help="Server processes sharing the port (one per core); above 1, rate limits, "
            "budgets and the cache need Redis (docs/server.md, Workers).",
            min=1,
        ),
    ] = 1,
    store_writer: Annotated[
        str | None,
        typer.Option(
            "--store-writer",
            help="Where the store's writes run: thread (in this process), process (a child "
            "process, on another core) or auto (the child when there are two cores or more "
            "and it starts, else the thread, with a warning; docs/store.md, 'A writer "
            "process'). Default: $AIVITALS_STORE_WRITER, else auto.",
            show_default=False,
        ),
    ] = None,
    retention_days: Annotated[
        float | None, typer.Option(help="Delete raw calls older than this many days.")
    ] = None,
    alerts: Annotated[
        Path | None,
        typer.Option(
            "--alerts",
            help="Evaluate these alert rules (YAML; `aivitals alerts init` writes the defaults), "
            "notify, and show active alerts on the dashboard. Reloaded on change or SIGHUP.",
            show_default=False,
        ),
    ] = None,
    ingest_key: Annotated[
        str | None,
        typer.Option(
            help="Ask for this bearer key on POST /api/v1/calls and /api/v1/scores (at least 16 "
            "characters). Default: $AIVITALS_INGEST_KEY; none: ingest is open.",
            show_default=False,
        ),
    ] = None,
    dashboard_token: Annotated[
        str | None,
        typer.Option(
            help="Ask for this token on the dashboard and the read API (docs/dashboard.md). "
            "Default: $AIVITALS_DASHBOARD_TOKEN.",
            show_default=False,
        ),
    ] = None,
    body_timeout_s: Annotated[
        float,
        typer.Option(
            help="Answer 408 and close the connection when a request body has not all arrived "
            "this many seconds after it began.",
            min=0.001,
        ),
    ] = 30.0,  # server.limits.BODY_TIMEOUT_S, not imported here to keep `--help` fast
    otlp_attribute: Annotated[
        list[str] | None,
        typer.Option(
            "--otlp-attribute",
            help="OTLP receiver: read an attribution field from this span or resource "
            "attribute, FIELD=ATTRIBUTE (feature, team, prompt_version, user, environment, "
            "endpoint, or tag.<name>); repeatable. E.g. feature=app.feature (docs/otel.md).",
            show_default=False,
        ),
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help="Share rate limits, budgets and the response cache with every worker and "
            "replica through this Redis (redis://host:port/db; overrides [redis] url; "
            "docs/shared-state.md).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the OpenAI-compatible gateway (/v1/chat/completions, /v1/completions,
    /v1/embeddings, /v1/models) when --upstream or --config names an upstream, the ingest API
    (POST /api/v1/calls, /api/v1/scores), the read API, the web dashboard at /, /metrics,
    /healthz and /readyz. See docs/gateway.md, docs/server.md and docs/dashboard.md.

    SIGTERM or Ctrl+C finishes in-flight requests, then writes every accepted call to the store
    (or, while the store cannot be written, beside it, for the next start). A 2xx from the
    ingest API means the calls are committed. The exit status is 1 if anything accepted was
    lost.
    """
    params = dict(locals())  # first: every option, for the workers of --workers N
    from prometheus_client import disable_created_metrics  # noqa: PLC0415

    from aivitals.collector import settle  # noqa: PLC0415
    from aivitals.otlp.mapping import AttributeMap  # noqa: PLC0415
    from aivitals.quality.judge import LlmJudge  # noqa: PLC0415
    from aivitals.runtime import build_runtime  # noqa: PLC0415  # keeps `aivitals --help` fast
    from aivitals.server.app import create_app  # noqa: PLC0415
    from aivitals.server.serve import serve as run  # noqa: PLC0415
    from aivitals.server.workers import current_slot  # noqa: PLC0415
    from aivitals.serving import bind  # noqa: PLC0415
    from aivitals.store.errors import StoreError  # noqa: PLC0415
    from aivitals.store.writer_process import ProcessWrittenStore, open_written  # noqa: PLC0415

    slot = current_slot()  # set in a worker of `serve --workers N`, which the parent checked
    if no_db and db is not None:
        raise fail("--db and --no-db go one at a time")
    try:
        env = read_env()
        target = None if no_db else (db or env.store or DEFAULT_STORE)
        writer = check_store_writer(
            store_writer.strip().lower()
            if store_writer is not None
            else env.store_writer or "auto",
            setting="--store-writer",
        )
        settings = _settings(config, upstream)
        token = dashboard_token or env.dashboard_token
        key = ingest_key or env.ingest_key
        if key is not None and len(key) < 16:
            raise ConfigError("--ingest-key must be at least 16 characters")
        if workers > 1 and settings is not None:
            _refuse_unshared(settings, workers, redis)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    try:
        attribute_map = AttributeMap.from_pairs(otlp_attribute or ())
    except ValueError as exc:
        raise fail(f"--otlp-attribute {exc}") from None
    if slot is not None:
        sock = slot.socket()
    else:
        try:
            sock = bind(host, port)
        except OSError as exc:
            raise fail(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port"
            ) from None
    if workers > 1 and slot is None:
        _supervise(sock, params, settings, upstream, alerts)
        return
    from aivitals.alerts import AlertService, RuleFileError, default_state_path  # noqa: PLC0415
    from aivitals.alerts.service import LEASE_NAME  # noqa: PLC0415
    from aivitals.alerts.state import StateFileError  # noqa: PLC0415
    from aivitals.query import Queries  # noqa: PLC0415
    from aivitals.store.leases import Lease  # noqa: PLC0415

    store = None
    runtime = None
    service = None
    shared = None
    try:
        store = open_written(target, writer) if target is not None else None
        queries = Queries(store.engine) if store is not None else None
        shared = _shared(settings, redis)
        ledger = settings.build_budgets() if settings is not None else None
        if shared is not None:
            ledger = shared.ledger
        # The server records what it receives into the store it reads (one engine for both),
        # and never into an endpoint (itself, perhaps). Its own runtime, not the process
        # default: nothing global, closed below.
        runtime = build_runtime(
            store=store if store is not None else False,
            store_writer="process" if isinstance(store, ProcessWrittenStore) else "thread",
            endpoint=False,
            retention_days=retention_days,
            queue_size=QUEUE_LIMIT,
            timezone=settings.timezone if settings is not None else None,
            sinks=[ledger] if ledger is not None else [],
            judge=settings.judge.build() if settings is not None and settings.judge else None,
            evaluators=settings.quality.evaluators if settings is not None else True,
            capture_content=settings.capture.build() if settings is not None else False,
        )
        judge = runtime.recorder.quality.consumers.get("judge")
        if queries is not None and isinstance(judge, LlmJudge):
            judge.reload_spend(queries)  # a restart does not reset the judge's budget day
        gateway = None
        if settings is not None:
            gateway = _gateway(settings, runtime.recorder, upstream, ledger, shared)
            if ledger is not None and ledger.budgets and queries is not None:
                ledger.reload(queries)
        if alerts is not None:
            service = AlertService(
                alerts,
                windows=runtime.windows,
                queries=queries,
                state_path=default_state_path(target),
                budgets=ledger.budgets if ledger is not None else (),
                # Whenever there is a store: other workers or replicas may share it.
                lease=Lease(store.engine, LEASE_NAME) if store is not None else None,
            )
            service.start()
    except (StoreError, ConfigError, RuleFileError, StateFileError) as exc:
        sock.close()
        if runtime is not None:
            runtime.recorder.close()
        if store is not None:
            store.close()
        raise fail(str(exc)) from None
    if service is not None:
        reload_rules = service.request_reload
        # SIGHUP reloads the rules (request_reload is signal-safe: the reload runs on the
        # service's own thread).
        signal.signal(signal.SIGHUP, lambda signum, frame: reload_rules())
    server = create_app(
        runtime=runtime,
        store=store,
        queue_limit=QUEUE_LIMIT,
        close_on_shutdown=True,
        gateway=gateway,
        dashboard_token=token,
        alerts=service,
        ingest_key=key,
        body_timeout_s=body_timeout_s,
        otlp=_otlp_receiver(attribute_map),
    )
    if shared is not None:
        server.state.context.metrics.expose(shared.registry)
        server.state.context.checks["redis"] = shared.readiness
        shared.start()
    routes = ""
    if gateway is not None:
        names = ", ".join(f"{u.name} ({u.base_url})" for u in gateway.upstreams.all)
        routes = f"aivitals gateway: /v1/... goes to {names}"

    def announce(line: str) -> None:
        if slot is not None:
            slot.ready()  # the parent says "listening" once every worker is
            return
        say(line)  # the "listening on URL" line first: scripts wait for it
        if routes:
            say(routes)

    private = None
    if slot is not None:
        from aivitals.server.worker_metrics import (  # noqa: PLC0415
            PrivateExposition,
            merged_registry,
        )

        metrics = server.state.context.metrics
        private = PrivateExposition(metrics.registry, slot.run_dir, slot.index)
        metrics.scrape_registry = merged_registry(metrics.registry, slot.run_dir, slot.index)
        # Orphaned (the parent was killed): stop gracefully, as on the parent's SIGTERM.
        slot.watch_parent(lambda: os.kill(os.getpid(), signal.SIGTERM))

    # Series with a _created timestamp per counter double what a scrape carries for nothing
    # dashboards use; this process is ours, so turn them off for every registry in it.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    # Likewise the collector: what start-up built is frozen, and passes come rarer (the
    # gateway's p99 under load was the full passes over that heap; aivitals/collector.py).
    settle()
    try:
        run(server, sock, announce=announce)
    finally:
        if private is not None:
            private.close()
        if service is not None:
            service.stop()
        runtime.recorder.close()
        if shared is not None:
            shared.close()  # after the recorder: the last calls' spend reaches Redis
        if store is not None:
            store.close()
    lost = {where: count for where, count in runtime.recorder.lost().items() if count}
    if lost:
        # Said loudly, and in the exit status, so a supervisor or an operator sees it.
        detail = ", ".join(f"{count} {sink} {reason}" for (sink, reason), count in lost.items())
        fail(
            f"{sum(lost.values())} accepted calls and scores were lost before reaching the "
            f"store ({detail}); see the log above and aivitals_lost_items_total"
        )
        raise typer.Exit(code=1)  # not fail's 2: the command was right, the outcome was not


def _otlp_receiver(attribute_map: AttributeMap) -> OtlpReceiver:
    from aivitals.otlp.mapping import calls_from_traces  # noqa: PLC0415
    from aivitals.otlp.receive import OtlpReceiver  # noqa: PLC0415

    return OtlpReceiver(mapping=functools.partial(calls_from_traces, attributes=attribute_map))


def _refuse_unshared(settings: GatewayConfig, workers: int, redis_url: str | None = None) -> None:
    """Raise `ConfigError` when several processes would each keep their own limits, budgets or
    cache (a limit of 10 a minute would let 10 through each worker) and no Redis shares them."""
    if redis_url is not None or settings.redis is not None:
        return
    limits = settings.limits
    found = []
    if (
        limits.per_user is not None
        or limits.teams
        or any(k.requests_per_minute or k.tokens_per_minute for k in settings.keys)
    ):
        found.append("rate limits")
    if settings.budgets:
        found.append("budgets")
    if settings.cache is not None:
        found.append("the response cache")
    if found:
        raise ConfigError(
            f"--workers {workers} with {' and '.join(found)} needs Redis to share them: each "
            "worker would keep its own counters (a limit of 10 a minute would let "
            f"{10 * workers} through). Add a [redis] section or --redis URL "
            "(docs/shared-state.md), or run --workers 1"
        )


def _supervise(
    sock: socket.socket,
    params: dict[str, Any],
    settings: GatewayConfig | None,
    upstream: str | None,
    alerts: Path | None,
) -> None:
    """Run ``--workers`` copies of this command, with ``params``, on ``sock``."""
    from aivitals.server.workers import Supervisor  # noqa: PLC0415
    from aivitals.serving import origin  # noqa: PLC0415

    if alerts is not None:
        _warn_live_rules(alerts)
    routes = ""
    if settings is not None:
        from aivitals.gateway.upstreams import Upstream  # noqa: PLC0415

        quick = [Upstream(name="upstream", base_url=upstream)] if upstream is not None else []
        names = ", ".join(f"{u.name} ({u.base_url})" for u in settings.build_upstreams(quick).all)
        routes = f"aivitals gateway: /v1/... goes to {names}"

    workers = params["workers"]

    def announce(line: str) -> None:
        say(line)  # the same line as one process says, URL last: scripts wait for it
        say(f"aivitals serve: {workers} workers")
        if routes:
            say(routes)

    # Connections queue from now on, while workers start and whenever one restarts.
    sock.listen(2048)
    supervisor = Supervisor(
        sock=sock,
        count=workers,
        params=params,
        announce=announce,
        listening=f"aivitals serve listening on {origin(sock)}",
    )
    status = supervisor.run()
    if status:
        raise typer.Exit(code=status)


def _warn_live_rules(alerts: Path) -> None:
    from aivitals.alerts import RuleFileError  # noqa: PLC0415
    from aivitals.alerts.rules import load_rules  # noqa: PLC0415

    try:
        rules = load_rules(alerts)
    except RuleFileError:
        return  # the first worker says what is wrong, and the server does not start
    live = [rule.name for rule in rules.rules if rule.source == "live"]
    if live:
        say(
            f"warning: alert rules {', '.join(live)} read `source: live`, which with several "
            "workers sees only the evaluating worker's own traffic; `source: store` (or auto) "
            "reads every worker's calls (docs/server.md, Workers)"
        )


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _settings(config: Path | None, upstream: str | None) -> GatewayConfig | None:
    """The gateway's settings from --config and/or --upstream; None for no gateway."""
    from aivitals.gateway.config import (  # noqa: PLC0415
        GatewayConfig,
        load_gateway_config,
    )

    if config is None and upstream is None:
        return None
    settings = load_gateway_config(config) if config is not None else GatewayConfig()
    if not settings.upstreams and upstream is None:
        raise ConfigError(f"{config}: no [[upstreams]]: add one, or pass --upstream URL")
    return settings


def _shared(settings: GatewayConfig | None, redis: str | None) -> SharedState | None:
    """The Redis-backed limits, budgets and cache, when --redis or [redis] names a Redis."""
    if settings is None or (redis is None and settings.redis is None):
        return None
    from aivitals.shared import SharedState  # noqa: PLC0415  # imports redis only when used

    return SharedState.open(settings, redis)


def _gateway(
    settings: GatewayConfig,
    recorder: Recorder,
    upstream: str | None,
    ledger: BudgetLedger | None,
    shared: SharedState | None = None,
) -> Gateway:
    from aivitals.gateway.proxy import Gateway  # noqa: PLC0415
    from aivitals.gateway.upstreams import Upstream  # noqa: PLC0415

    quick = [Upstream(name="upstream", base_url=upstream)] if upstream is not None else []
    cache, cache_routes = settings.build_cache()
    if shared is not None:
        cache, cache_routes = shared.cache, shared.cache_routes
    return Gateway(
        recorder=recorder,
        upstreams=settings.build_upstreams(quick),
        keys=settings.build_keys(),
        policy=settings.build_policy(),
        limiter=shared.limiter if shared is not None else None,
        budgets=ledger,
        cache=cache,
        cache_routes=cache_routes,
        cache_scope=settings.cache.scope if settings.cache is not None else "team",
        semantic=settings.build_semantic_cache(),
        guardrails=settings.build_guardrails(),
    )
