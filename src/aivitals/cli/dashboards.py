"""``aivitals dashboards export``: dashboards over aivitals' metrics, for Grafana."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from aivitals.cli.app import app, console, fail

dashboards = typer.Typer(
    name="dashboards",
    help="Dashboards over aivitals' Prometheus metrics, for Grafana.",
    no_args_is_help=True,
)
app.add_typer(dashboards)

# Grafana refuses a dashboard uid longer than 40 characters or outside this alphabet.
_UID = re.compile(r"[A-Za-z0-9_-]{1,40}")


@dashboards.command("export")
def export(
    grafana: Annotated[
        bool, typer.Option("--grafana", help="A Grafana dashboard (JSON, for import).")
    ] = False,
    output_path: Annotated[
        str, typer.Option("--output", "-o", help="The file to write; - for standard output.")
    ] = "-",
    title: Annotated[
        str | None, typer.Option(help="The dashboard's title (default: aivitals: LLM calls).")
    ] = None,
    uid: Annotated[
        str | None,
        typer.Option(
            help="The dashboard's uid, 1 to 40 of A-Z a-z 0-9 _ - (default: aivitals-llm)."
        ),
    ] = None,
) -> None:
    """Write a dashboard of cost, latency, tokens, quality and health (docs/grafana.md).

    It reads the metrics of aivitals' /metrics through a Prometheus data source chosen when the
    dashboard opens, with filters by provider, model, feature and team.
    """
    from aivitals.dashboards import DEFAULT_TITLE, DEFAULT_UID, export_dashboard  # noqa: PLC0415

    if not grafana:
        raise fail("say which dashboard to export: --grafana (the only kind so far)")
    if uid is not None and not _UID.fullmatch(uid):
        raise fail(f"--uid must be 1 to 40 of A-Z a-z 0-9 _ -, not {uid!r}")
    if title is not None and not title.strip():
        raise fail("--title must not be blank")
    text = export_dashboard(title=title or DEFAULT_TITLE, uid=uid or DEFAULT_UID)
    if output_path == "-":
        sys.stdout.write(text)
        return
    target = Path(output_path)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {output_path}: {exc.strerror or exc}") from None
    console.print(f"wrote the Grafana dashboard to {output_path}", highlight=False, soft_wrap=True)
