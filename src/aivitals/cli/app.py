"""The ``aivitals`` command line.

Every command answers a mistake with one line that says what to do, and exit code 2.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aivitals.config import ConfigError

app = typer.Typer(
    name="aivitals",
    help="Observability for applications that call large language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped or captured output (CI logs, files) gets room for the report tables; a terminal keeps its
# own width.
console = Console(width=None if sys.stdout.isatty() else 100)
errors = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print a one-line error and return the exit to raise (code 2)."""
    # soft_wrap: the message stays one line, whatever the terminal's width.
    # escape: a message quoting the user's text ("[[upstreams]]", a path) is printed as it is.
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@app.command(
    help="Tour aivitals: a fake upstream, a realistic workload through the openai client, a "
    "report.\n\n"
    "Starts `aivitals mock-llm` in process, sends --calls requests (several models, features, "
    "teams and users, streams, cached tokens, injected errors, quality scores) through an "
    "instrumented official openai client, dates them over the past --history, stores them in "
    "--db, and prints spend, latency per model, attribution and errors as aivitals recorded "
    "them, then the commands that read them back."
)
def demo(
    calls: Annotated[int, typer.Option(help="How many calls to send.", min=1, max=100_000)] = 50,
    seed: Annotated[int, typer.Option(help="Same seed, same calls, tokens, costs and errors.")] = 7,
    concurrency: Annotated[int, typer.Option(help="Calls in flight at once.", min=1, max=64)] = 8,
    db: Annotated[
        str, typer.Option(help="Where to store the calls: a SQLite file (created if missing).")
    ] = "./aivitals.db",
    history: Annotated[
        str,
        typer.Option(
            help="Date the calls over this span before now, as a day of traffic (30m, 24h, 7d); "
            "none: keep the times they were sent."
        ),
    ] = "24h",
) -> None:
    """`aivitals demo`; its help is the ``help=`` above, one line a paragraph for typer."""
    dated = None if history.strip().lower() in ("none", "0") else history
    try:
        # Imported here: keeps `aivitals --help` fast, and a missing openai client is one line.
        from aivitals.demo.run import history_span, program, render, run_demo  # noqa: PLC0415
    except ImportError as exc:
        # `pip install aivitals` alone has no openai client; the demo drives the official one.
        if (exc.name or "").partition(".")[0] != "openai":
            raise
        raise fail("the demo needs the openai client: pip install 'aivitals[openai]'") from None
    try:
        if dated is not None:
            history_span(dated)  # a mistake is one line before anything starts
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        result = run_demo(
            calls=calls, seed=seed, concurrency=concurrency, db=db, console=console, history=dated
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
    render(result, console, program=program())


# Short metavars and help keep every option's whole name readable in an 80-column terminal (rich
# shrinks the name column first when the type and help columns are wide).
@app.command(
    "mock-llm",
    help="Run a fake OpenAI-compatible upstream for tests, demos and benchmarks.\n\n"
    "Chat completions (streaming or not), completions, embeddings and models, with configurable "
    "latency, tokens and injected errors; X-Mock-* request headers override the options per "
    "request. See docs/mock-llm.md.",
)
def mock_llm(
    host: Annotated[str, typer.Option(help="Address to listen on.", metavar="HOST")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port to listen on.", min=1, max=65535, metavar="PORT")
    ] = 8900,
    latency_median_ms: Annotated[
        float, typer.Option(help="Median latency (lognormal).", metavar="MS")
    ] = 400.0,
    latency_sigma: Annotated[
        float, typer.Option(help="Spread of the lognormal latency.", metavar="SIGMA")
    ] = 0.5,
    ttft_median_ms: Annotated[
        float, typer.Option(help="Median time to a stream's first chunk.", metavar="MS")
    ] = 150.0,
    completion_tokens_min: Annotated[
        int, typer.Option(help="Fewest completion tokens.", metavar="N")
    ] = 20,
    completion_tokens_max: Annotated[
        int, typer.Option(help="Most completion tokens.", metavar="N")
    ] = 200,
    cached_fraction: Annotated[
        float, typer.Option(help="Share of chat calls with cached tokens.", metavar="SHARE")
    ] = 0.0,
    error_rate: Annotated[
        float, typer.Option(help="Share of requests that fail on purpose.", metavar="SHARE")
    ] = 0.0,
    error_types: Annotated[
        str | None,
        typer.Option(
            help="Injected errors to draw from, comma-separated (default: all).", metavar="NAMES"
        ),
    ] = None,
    hang_s: Annotated[
        float, typer.Option(help="How long an injected timeout hangs.", metavar="SECONDS")
    ] = 30.0,
    seed: Annotated[
        int | None, typer.Option(help="Make the random decisions repeatable.", metavar="N")
    ] = None,
    time_scale: Annotated[
        float, typer.Option(help="Multiply every sleep (0: never sleep).", metavar="FACTOR")
    ] = 1.0,
    api_key: Annotated[
        str | None,
        typer.Option(help="Require this bearer key, as a real provider does.", metavar="KEY"),
    ] = None,
) -> None:
    from aivitals.mock_llm import MockConfig, serve  # noqa: PLC0415  # keeps `aivitals --help` fast
    from aivitals.mock_llm.config import DEFAULT_ERROR_TYPES  # noqa: PLC0415

    kinds = (
        tuple(kind.strip() for kind in error_types.split(","))
        if error_types
        else DEFAULT_ERROR_TYPES
    )
    try:
        config = MockConfig(
            latency_median_ms=latency_median_ms,
            latency_sigma=latency_sigma,
            ttft_median_ms=ttft_median_ms,
            completion_tokens_min=completion_tokens_min,
            completion_tokens_max=completion_tokens_max,
            cached_fraction=cached_fraction,
            error_rate=error_rate,
            error_types=kinds,  # type: ignore[arg-type]  # MockConfig checks each name
            hang_s=hang_s,
            seed=seed,
            time_scale=time_scale,
            api_key=api_key,
        )
    except ConfigError as exc:
        raise fail(str(exc)) from None
    try:
        serve(config, host=host, port=port)
    except OSError as exc:
        raise fail(
            f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port"
        ) from None


@app.command()
def prices(
    model: Annotated[str, typer.Argument(help="The model name as your application sends it.")],
    provider: Annotated[
        str, typer.Option(help="The provider, if the name is ambiguous.")
    ] = "openai",
    overrides: Annotated[
        str | None, typer.Option(help="A TOML or YAML price override file to consult first.")
    ] = None,
) -> None:
    """Show the price aivitals will use for a model, and where it comes from."""
    from aivitals.price_overrides import PriceFileError  # noqa: PLC0415
    from aivitals.pricing import Pricer  # noqa: PLC0415
    from aivitals.usage import TokenUsage  # noqa: PLC0415

    logging.getLogger("aivitals.pricing").setLevel(logging.ERROR)  # this command says it itself
    try:
        pricer = Pricer.from_file(overrides)
    except PriceFileError as exc:
        raise fail(str(exc)) from None
    million = 1_000_000
    probes = {
        "input": TokenUsage(input_tokens=million),
        "cached input": TokenUsage(input_tokens=million, cached_input_tokens=million),
        "cache write": TokenUsage(input_tokens=million, cache_write_tokens=million),
        "1-hour cache write": TokenUsage(
            input_tokens=million, cache_write_tokens=million, cache_write_1h_tokens=million
        ),
        "output": TokenUsage(output_tokens=million),
    }
    table = Table(title=f"{provider}/{model}: USD per million tokens", title_justify="left")
    table.add_column("tokens")
    table.add_column("USD / 1M", justify="right")
    source = ""
    for name, usage in probes.items():
        cost = pricer.price(provider=provider, model=model, usage=usage)
        if cost is None:
            raise fail(
                f"no price for {model!r} (provider {provider!r}): its calls are recorded with "
                "cost_usd null; add it to a price override file (docs/pricing.md)"
            )
        source = cost.source
        # By direction: a per-request fee is in the total and no token's price.
        usd = cost.output_usd if name == "output" else cost.input_usd
        table.add_row(name, f"{usd.normalize():f}")
    console.print(table)
    window = pricer.context_window(provider=provider, model=model)
    console.print(f"source: {source}" + (f"; context window {window:,} tokens" if window else ""))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
