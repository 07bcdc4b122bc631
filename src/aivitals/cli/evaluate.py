"""``aivitals evaluate``: the evaluators and the judge, run later on stored calls whose content
was captured (docs/quality.md, "Evaluating stored calls")."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aivitals.cli.app import app, console, errors, fail
from aivitals.cli.history import DbOption, JsonOption, SinceOption, WhereOption, _reading
from aivitals.config import ConfigError

if TYPE_CHECKING:
    from aivitals.content import CallContent
    from aivitals.model import Call, Score
    from aivitals.quality.evaluators import EvaluatorConsumer
    from aivitals.quality.judge import LlmJudge
    from aivitals.quality.restore import ScoreCollector
    from aivitals.recorder import Recorder
    from aivitals.store.sql import SqlStore

PAGE = 200
"""Calls read, evaluated and committed at a time (and a progress line after each page)."""


@dataclass
class Tally:
    """What became of each evaluator's (or the judge's) stored calls."""

    scored: Counter[str] = field(default_factory=Counter)
    skipped: dict[str, Counter[str]] = field(default_factory=dict)

    def skip(self, name: str, reason: str, count: int = 1) -> None:
        self.skipped.setdefault(name, Counter())[reason] += count


@app.command()
def evaluate(
    since: SinceOption = "7d",
    where: WhereOption = None,
    evaluator: Annotated[
        list[str] | None,
        typer.Option(
            "--evaluator",
            help="Run this evaluator (repeatable). Default: empty, truncated, refusal, "
            "json_valid and every one --evaluators-from registers. Not pii_leak: stored text "
            "is redacted.",
            show_default=False,
        ),
    ] = None,
    evaluators_from: Annotated[
        list[str] | None,
        typer.Option(
            "--evaluators-from",
            help="Import this module (a dotted name or a .py file) first: the evaluators it "
            "registers with aivitals.evaluator run too (repeatable).",
            show_default=False,
        ),
    ] = None,
    no_evaluators: Annotated[
        bool, typer.Option("--no-evaluators", help="Run no evaluator: the judge only.")
    ] = False,
    judge_config: Annotated[
        Path | None,
        typer.Option(
            "--judge-config",
            help="Also judge the calls, with the [judge] section of this serve config file "
            "(its sample rate applies).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Evaluate and say what would be written; write nothing."),
    ] = False,
    db: DbOption = None,
    json_: JsonOption = False,
) -> None:
    """Score stored calls whose content was captured: the evaluators, and the judge with
    --judge-config. A call that already has a score of that name keeps it, so running this
    again adds nothing.

    Examples: `aivitals evaluate --since 7d`, `aivitals evaluate --evaluators-from
    myapp.quality --evaluator polite`, `aivitals evaluate --judge-config aivitals.toml
    --no-evaluators --where feature=search`.
    """
    from aivitals.query import parse_since, parse_where  # noqa: PLC0415  # keeps --help fast
    from aivitals.query.content import count_calls, has_contents  # noqa: PLC0415

    for module in evaluators_from or ():
        _import_evaluators(module)
    names = [] if no_evaluators else _chosen(evaluator)
    if no_evaluators and evaluator:
        raise fail("--evaluator and --no-evaluators go one at a time")
    if not names and judge_config is None:
        raise fail("nothing to run: --no-evaluators needs --judge-config")
    config = _judge_settings(judge_config) if judge_config is not None else None
    with _reading(db) as store:
        window = parse_since(since, now=datetime.now(UTC))
        filters = parse_where(where or [])
        with store.engine.connect() as connection:
            if not has_contents(connection):
                raise fail(f"{store.name} has no contents table: it predates content capture")
            total, captured = count_calls(connection, window, filters)
        if not captured:
            raise fail(
                f"no captured content among the {total:,} calls of the window: content "
                "capture is off by default (configure(capture_content=True), or [capture] in "
                "the serve config; docs/quality.md)"
            )
        summary = _run(store, window, filters, names, config, dry_run=dry_run, total=captured)
    summary["calls_read"] = total
    summary["with_content"] = captured
    _report(summary, json_)


def _chosen(given: list[str] | None) -> list[str]:
    from aivitals.quality.evaluators import BUILTIN, registered  # noqa: PLC0415
    from aivitals.quality.restore import STORED_CONTENT_EVALUATORS  # noqa: PLC0415

    known = registered()
    if not given:
        return [*STORED_CONTENT_EVALUATORS, *(name for name in known if name not in BUILTIN)]
    for name in given:
        if name == "pii_leak":
            raise fail(
                "--evaluator pii_leak: stored content is redacted, so pii_leak would score the "
                "placeholders; it runs only on live calls"
            )
        if name not in known:
            raise fail(
                f"--evaluator: unknown evaluator {name!r}; the built-ins are "
                f"{', '.join(STORED_CONTENT_EVALUATORS)}, and yours come from --evaluators-from"
            )
    return list(dict.fromkeys(given))


def _import_evaluators(module: str) -> None:
    """Import ``module`` (a dotted name, or a path to a .py file) for what it registers."""
    try:
        if module.endswith(".py"):
            path = Path(module)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None or not path.is_file():
                raise fail(f"--evaluators-from {module}: no such file")
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = loaded
            spec.loader.exec_module(loaded)
        else:
            importlib.import_module(module)
    except typer.Exit:
        raise
    except Exception as exc:  # the user's module: whatever it raises is the user's to see
        raise fail(f"--evaluators-from {module}: {type(exc).__name__}: {exc}") from None


def _judge_settings(path: Path) -> tuple[Any, str]:
    from aivitals.gateway.config import load_gateway_config  # noqa: PLC0415

    try:
        settings = load_gateway_config(path)
        if settings.judge is None:
            raise ConfigError(f"{path}: no [judge] section")
        return settings.judge.build(), settings.timezone
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _run(
    store: SqlStore,
    window: Any,
    filters: Any,
    names: list[str],
    judge_settings: tuple[Any, str] | None,
    *,
    dry_run: bool,
    total: int,
) -> dict[str, Any]:
    from aivitals.quality.evaluators import EvaluatorConsumer  # noqa: PLC0415
    from aivitals.quality.restore import restored_content  # noqa: PLC0415
    from aivitals.query import Queries  # noqa: PLC0415
    from aivitals.query.content import calls_with_content, scored  # noqa: PLC0415

    recorder = _recorder(store)
    judge = None
    if judge_settings is not None and not dry_run:
        judge = _judge(judge_settings, recorder, Queries(store.engine))
    tally = Tally()
    evaluators = {name: EvaluatorConsumer(_kept, evaluators=[name]) for name in names}
    judge_before = Counter(judge.stats.outcomes) if judge is not None else Counter()
    criteria = _criteria(judge_settings)
    read = 0
    skipped_rows = 0
    after = None
    try:
        while True:
            with store.engine.connect() as connection:
                page = calls_with_content(connection, window, filters, limit=PAGE, after=after)
                ids = [call.id for call, _ in page.items]
                done = scored(connection, ids, [*names, *criteria])
            skipped_rows += page.skipped_rows
            scores: list[Score] = []
            for call, stored in page.items:
                content = restored_content(call, stored)
                scores.extend(_evaluate(call, content, evaluators, done, tally))
                if judge_settings is not None:
                    _offer(judge, judge_settings[0], call, content, criteria, done, tally)
            if judge is not None:
                judge.flush(timeout_s=None)  # the judge's queue holds a page: none is dropped
                scores.extend(recorder.take())
            if scores and not dry_run:
                recorder.record_scores_durably(scores)
            for score in scores:
                tally.scored[score.name] += 1
            read += len(page.items) + page.skipped_rows
            after = page.after
            if after is None:
                break
            errors.print(f"evaluated {read:,} of {total:,} calls", highlight=False)
    finally:
        if judge is not None:
            judge.close()
        recorder.close()
    summary: dict[str, Any] = {
        "dry_run": dry_run,
        "unreadable_rows": skipped_rows,
        "evaluators": {
            name: {"scored": tally.scored[name], "skipped": dict(tally.skipped.get(name, {}))}
            for name in names
        },
        "not_run": {
            "pii_leak": "stored text is redacted",
            "json_valid of the answer text": "the request's response_format is not stored",
        },
    }
    if judge_settings is not None:
        outcomes = Counter(judge.stats.outcomes) - judge_before if judge is not None else Counter()
        summary["judge"] = {
            "scored": {name: tally.scored[name] for name in criteria},
            "outcomes": dict(outcomes),
            "skipped": dict(tally.skipped.get("judge", {})),
        }
    lost = sum(recorder.lost().values())
    if lost:
        summary["lost"] = lost
    return summary


def _kept(score: Score) -> Score:
    return score


def _evaluate(
    call: Call,
    content: CallContent,
    evaluators: dict[str, EvaluatorConsumer],
    done: set[tuple[str, str]],
    tally: Tally,
) -> list[Score]:
    """The new scores of ``call``, under lasting ids; what was not scored is tallied."""
    import msgspec  # noqa: PLC0415

    from aivitals.quality.restore import rescore_id  # noqa: PLC0415

    found = []
    for name, consumer in evaluators.items():
        if (call.id, name) in done:
            tally.skip(name, "already scored")
            continue
        try:
            scores = consumer.evaluate(call, content)
        except Exception as exc:  # the user's evaluator: counted, and the run goes on
            tally.skip(name, f"raised {type(exc).__name__}")
            continue
        if not scores:
            tally.skip(name, "does not apply")
            continue
        score = scores[0]
        found.append(msgspec.structs.replace(score, id=rescore_id(call.id, name, score.source)))
    return found


def _criteria(judge_settings: tuple[Any, str] | None) -> list[str]:
    if judge_settings is None:
        return []
    return [f"judge.{name}" for name in judge_settings[0].criterion_names]


def _offer(
    judge: LlmJudge | None,
    config: Any,
    call: Call,
    content: CallContent,
    criteria: list[str],
    done: set[tuple[str, str]],
    tally: Tally,
) -> None:
    from aivitals.quality.judge import sampled  # noqa: PLC0415
    from aivitals.quality.judge_prompt import case_from  # noqa: PLC0415

    # Any verdict counts: a criterion the case lacks (hallucination without context) never is.
    if any((call.id, name) in done for name in criteria):
        tally.skip("judge", "already judged")
        return
    if judge is not None:
        judge.on_content(call, content)
        return
    rate = config.rate_for(
        model=call.model, feature=call.feature, prompt_version=call.prompt_version
    )
    if not sampled(call.id, rate):
        tally.skip("judge", "not sampled")
    elif case_from(content, config.criterion_names) is None:
        tally.skip("judge", "nothing to judge")
    else:
        tally.skip("judge", "would be judged (dry run)")


def _recorder(store: SqlStore) -> ScoreCollector:
    from aivitals.config import read_env  # noqa: PLC0415
    from aivitals.pricing import Pricer  # noqa: PLC0415
    from aivitals.quality.restore import ScoreCollector  # noqa: PLC0415
    from aivitals.sinks.store import StoreSink  # noqa: PLC0415

    try:
        pricer = Pricer.from_file(read_env().price_overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    return ScoreCollector(pricer=pricer, batch_sinks=[StoreSink(store)])


def _judge(settings: tuple[Any, str], recorder: Recorder, queries: Any) -> LlmJudge:
    from dataclasses import replace  # noqa: PLC0415

    from aivitals.quality.judge import LlmJudge  # noqa: PLC0415

    config, zone = settings
    # Its queue holds a whole page, so offering a page never drops (the command waits after each).
    config = replace(config, queue_size=max(config.queue_size, PAGE))
    try:
        judge = LlmJudge(config, recorder=recorder, timezone=zone)
    except ConfigError as exc:
        recorder.close()
        raise fail(str(exc)) from None
    judge.reload_spend(queries)  # the day's budget counts what serve's judge spent already
    return judge


def _report(summary: dict[str, Any], json_: bool) -> None:
    if json_:
        import json  # noqa: PLC0415

        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    verb = "would write" if summary["dry_run"] else "wrote"
    console.print(
        f"{summary['calls_read']:,} calls in the window, {summary['with_content']:,} with "
        f"captured content",
        highlight=False,
    )
    for name, found in summary["evaluators"].items():
        console.print(
            f"  {name}: {verb} {found['scored']:,} scores{_skips(found)}", highlight=False
        )
    judged = summary.get("judge")
    if judged is not None:
        written = sum(judged["scored"].values())
        outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(judged["outcomes"].items()) if v)
        console.print(
            f"  judge: {verb} {written:,} scores"
            + (f" ({outcomes})" if outcomes else "")
            + _skips(judged),
            highlight=False,
        )
    if summary["unreadable_rows"]:
        console.print(f"  left out {summary['unreadable_rows']:,} unreadable rows", highlight=False)
    console.print(
        "  not run: pii_leak (stored text is redacted); json_valid of the answer text "
        "(response_format is not stored)",
        highlight=False,
    )
    if summary.get("lost"):
        errors.print(f"{summary['lost']:,} judge calls could not be stored", highlight=False)
        raise typer.Exit(code=1)


def _skips(found: dict[str, Any]) -> str:
    skipped = found["skipped"]
    if not skipped:
        return ""
    return "; skipped " + ", ".join(f"{count:,} {why}" for why, count in sorted(skipped.items()))
