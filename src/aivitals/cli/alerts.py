"""``aivitals alerts``: write the default rules, check them against the store, test notifiers,
export them for Prometheus."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from aivitals.cli.app import app, console, errors, fail
from aivitals.cli.history import DbOption, _reading

if TYPE_CHECKING:
    from aivitals.alerts.rules import RuleSet

alerts = typer.Typer(
    name="alerts",
    help="Alert rules: defaults, checks against the store, test notifications, Prometheus export.",
    no_args_is_help=True,
)
app.add_typer(alerts)

RulesOption = Annotated[
    str | None,
    typer.Option(
        "--rules",
        help="The rule file (aivitals alerts init writes one); without it, "
        "./aivitals-alerts.yaml if present, else the default rules.",
    ),
]
_DEFAULT = "aivitals-alerts.yaml"
TestRulesOption = Annotated[
    str | None,
    typer.Option("--rules", help="The rule file (default: ./aivitals-alerts.yaml)."),
]


def _load(path: str | None, *, or_defaults: bool = False) -> RuleSet:
    """The rules in ``path``; with no ``--rules`` and no ``./aivitals-alerts.yaml``, the defaults
    when ``or_defaults`` (said on standard error), else a one-line error."""
    from aivitals.alerts.rules import (  # noqa: PLC0415
        RuleFileError,
        default_rules_text,
        load_rules,
        parse_rules,
    )

    target = path or _DEFAULT
    if not Path(target).exists():
        if path is None and or_defaults:
            errors.print(
                f"no {_DEFAULT} here: using the default rules (aivitals alerts init writes them)",
                highlight=False,
                soft_wrap=True,
            )
            return parse_rules(default_rules_text())
        raise fail(f"no rule file at {target}: run `aivitals alerts init` to write the defaults")
    try:
        return load_rules(target)
    except RuleFileError as exc:
        raise fail(str(exc)) from None


@alerts.command("init")
def init(
    path: Annotated[str, typer.Option("--path", help="Where to write the rules.")] = _DEFAULT,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write the default rules (daily budget, cost per request, latency, quality, tokens, errors,
    cache), ready to edit."""
    from aivitals.alerts.rules import default_rules_text  # noqa: PLC0415

    target = Path(path)
    if target.exists() and not force:
        raise fail(f"{path} exists; edit it, or pass --force to overwrite it with the defaults")
    try:
        target.write_text(default_rules_text(), encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}") from None
    console.print(f"wrote the default alert rules to {path}", highlight=False, soft_wrap=True)


@alerts.command(
    "check",
    # One line a paragraph: typer keeps the line breaks of every paragraph after the first.
    help="Evaluate every rule once against the store and print what would fire (ignoring "
    "`for`).\n\nExit code 0 when it could check, whatever would fire; with --fail-on-firing, 1 "
    "when a rule would fire; 2 on a mistake (a bad rule file, no store).",
)
def check(
    rules: RulesOption = None,
    db: DbOption = None,
    fail_on_firing: Annotated[
        bool,
        typer.Option(
            "--fail-on-firing", help="Exit 1 when any rule would fire (for CI and cron jobs)."
        ),
    ] = False,
) -> None:
    from aivitals.alerts.engine import AlertEngine  # noqa: PLC0415
    from aivitals.query import Queries  # noqa: PLC0415

    ruleset = _load(rules, or_defaults=True)
    with _reading(db) as store:
        engine = AlertEngine(ruleset, queries=Queries(store.engine), notifiers={})
        findings = engine.check()
    table = Table(title="alert rules against the store, now", title_justify="left")
    for column in ("rule", "severity", "group", "value", "condition", "result"):
        table.add_column(column, justify="right" if column == "value" else "left")
    firing = 0
    for finding in findings:
        rule = finding.rule
        group = ", ".join(
            f"{k}={v}"
            for k, v in finding.labels.items()
            if k not in ("alertname", "severity") and k not in rule.labels
        )
        value = "no data" if finding.value is None else f"{finding.value:.6g}"
        firing += finding.breached
        result = "[bold red]would fire[/]" if finding.breached else "ok"
        table.add_row(
            rule.name,
            rule.severity,
            group or "-",
            value,
            f"{rule.op} {rule.threshold:g} over {rule.window}",
            result,
        )
    for name, error in engine.rule_errors.items():
        table.add_row(name, "", "", "", "", f"[red]error: {escape(error)}[/]")
    console.print(table)
    console.print(f"{firing} would fire", highlight=False)
    if fail_on_firing and firing:
        raise typer.Exit(code=1)


@alerts.command("test")
def send_test(
    rule: Annotated[str, typer.Argument(help="The rule to send a test notification for.")],
    rules: TestRulesOption = None,
    notifier: Annotated[
        str | None, typer.Option(help="Only this notifier (default: the rule's).")
    ] = None,
) -> None:
    """Send a test notification for a rule to its notifiers, now, and say how each went."""
    from aivitals.alerts.engine import AlertEngine  # noqa: PLC0415
    from aivitals.alerts.notifiers.build import NotifierConfigError  # noqa: PLC0415

    # The defaults name no notifier, so a test needs a rule file.
    ruleset = _load(rules)
    rules = rules or _DEFAULT
    try:
        chosen = ruleset.rule(rule)
    except KeyError:
        names = ", ".join(r.name for r in ruleset.rules)
        raise fail(f"no rule {rule!r} in {rules}; it has {names}") from None
    try:
        engine = AlertEngine(ruleset)
    except NotifierConfigError as exc:
        raise fail(str(exc)) from None
    targets = list(chosen.notify) if chosen.notify is not None else list(engine.notifiers)
    if notifier is not None:
        if notifier not in engine.notifiers:
            raise fail(f"no notifier {notifier!r} in {rules}")
        targets = [notifier]
    if not targets:
        raise fail(f"{rules} has no notifiers: add one under notifiers: (docs/alerts.md)")
    notification = engine.test_notification(chosen)
    failed = 0
    for name in targets:
        try:
            engine.notifiers[name].send(notification)
        except Exception as exc:
            failed += 1
            errors.print(f"{name}: failed: {exc}", highlight=False, soft_wrap=True)
        else:
            console.print(f"{name}: sent", highlight=False)
    if failed:
        raise typer.Exit(code=1)


@alerts.command("export")
def export(
    prometheus: Annotated[
        bool, typer.Option("--prometheus", help="A Prometheus rule file over aivitals' metrics.")
    ] = False,
    rules: RulesOption = None,
    output_path: Annotated[
        str, typer.Option("--output", "-o", help="The file to write; - for standard output.")
    ] = "-",
) -> None:
    """Write the rules (or, with no rule file, the defaults) as Prometheus alerting rules; rules
    PromQL cannot express are listed on standard error."""
    from aivitals.alerts.promql import export_prometheus  # noqa: PLC0415

    if not prometheus:
        raise fail("say which format to export: --prometheus (the only one so far)")
    result = export_prometheus(_load(rules, or_defaults=True))
    for name, reason in result.skipped:
        errors.print(f"not exported: {name}: {reason}", highlight=False, soft_wrap=True)
    for name, note in result.notes:
        errors.print(f"note: {name}: {note}", highlight=False, soft_wrap=True)
    text = result.text()
    if output_path == "-":
        sys.stdout.write(text)
        return
    try:
        Path(output_path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {output_path}: {exc.strerror or exc}") from None
    console.print(
        f"wrote {len(result.rules)} Prometheus rules to {output_path}",
        highlight=False,
        soft_wrap=True,
    )
