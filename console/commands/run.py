"""`console run | resume | status | runs | plan`: the headless front end of the engine."""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import click
from rich.table import Table

from console.app import App, common_options, pass_app
from console.checklist.engine import Engine, RunLock, run_dir
from console.checklist.spec import ChecklistSpec
from console.checklist.step import symbols_option
from console.commands.run_params import param_options
from console.errors import ConsoleError, Interrupted, StateError, UsageError
from console.render import output_console, pick_renderer
from console.settings_shown import limit_lines, operator_limits
from console.state import RunRecord, RunStatus
from console.steps import load_checklist
from console.summary import print_summary


def _symbols(value: str | None) -> list[str] | str | None:
    """``--symbols``: a list of symbols, or a named set (``top20``, ``top150``...) for checklists that take one."""
    if value is None:
        return None
    if re.fullmatch(r"top\d+", value.strip().lower(), flags=re.ASCII):
        return value.strip().lower()
    return symbols_option(value)


def _skips(values: tuple[str, ...], reason: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, _, why = value.partition(":")
        out[name.strip()] = why.strip() or reason or "skipped with --skip"
    return out


def _spec(
    app: App,
    checklist: str,
    symbols: list[str] | str | None,
    backend: str | None = None,
    params: dict[str, Any] | None = None,
) -> ChecklistSpec:
    named_set = symbols if isinstance(symbols, str) else None
    overrides = {
        "symbols": None if named_set else symbols,
        "symbol_set": named_set,
        "backend": backend,
        **(params or {}),
    }
    return load_checklist(
        checklist, profile=app.settings.profile, overrides=overrides, limits=operator_limits(app.loaded)
    )


def _still_costing(app: App, run_id: str) -> str:
    active = app.store.instances(run_id=run_id, active_only=True)
    if not active:
        return "nothing launched by this run is still running"
    names = ", ".join(f"{i.id} ({i.instance_type or i.provider})" for i in active)
    return (
        f"still running and costing money: {names}; terminate with `console instance terminate ID`"
        " or leave it to the watchdog"
    )


def _report_line(app: App, run_id: str) -> str:
    """Write the run's report (`console report`); a failure to write it never changes the run's exit."""
    from console.commands.report import report_for

    try:
        return f"report: {report_for(app, run_id)}"
    except Exception as exc:  # noqa: BLE001 - the run's outcome stands; say why there is no page
        return f"report not written ({type(exc).__name__}: {str(exc)[:200]}); try `console report {run_id}`"


def _drive(
    app: App, spec: ChecklistSpec, run_id: str, *, json_lines: bool, lock: RunLock | None = None, **selection: Any
) -> None:
    renderer = pick_renderer(json_lines=json_lines)
    engine = Engine(app.settings, app.store, listener=renderer, resources=app.resources)
    try:
        outcome = engine.drive(run_id, spec, lock=lock, **selection)
    except KeyboardInterrupt:
        renderer.close()
        raise Interrupted(f"run {run_id} interrupted; {_still_costing(app, run_id)}") from None
    finally:
        renderer.close()
    if not json_lines:
        print_summary(app.store, run_id)
        click.echo(_report_line(app, run_id))
        click.echo(
            f"run {run_id}: {outcome.status}"
            + (f" at {outcome.failed_step}: {outcome.message}" if outcome.failed_step else "")
        )
    if outcome.status is RunStatus.CANCELLED:
        raise Interrupted(f"run {run_id} cancelled at {outcome.failed_step}; {_still_costing(app, run_id)}")
    if outcome.exit_code:
        raise click.exceptions.Exit(outcome.exit_code)


@click.command("run")
@click.option(
    "--checklist", "checklist", required=True, help="A shipped checklist name (retrain) or a path to a .toml file."
)
@click.option("--symbols", help="Comma-separated symbols, e.g. BTC-USD,ETH-USD (overrides the checklist).")
@click.option(
    "--backend", help="Where training runs: a registered training backend, e.g. ssh (overrides the checklist)."
)
@click.option("--from", "from_step", help="Start at this step; earlier unfinished steps are recorded as skipped.")
@click.option("--only", help="Run only this step.")
@click.option("--skip", multiple=True, help="Skip a step: NAME or NAME:REASON (repeatable).")
@click.option("--reason", help="Reason recorded for --skip.")
@click.option("--new", "new_run", is_flag=True, help="Start a new run even if an unfinished one exists.")
@click.option("--json", "json_lines", is_flag=True, help="One JSON event per line.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation of costly steps.")
@param_options
@common_options
@pass_app
def run_cmd(
    app: App,
    checklist: str,
    symbols: str | None,
    backend: str | None,
    from_step: str | None,
    only: str | None,
    skip: tuple[str, ...],
    reason: str | None,
    new_run: bool,
    json_lines: bool,
    yes: bool,
    param_overrides: dict[str, Any],
) -> None:
    """Run a checklist (resuming the unfinished run of the same checklist and parameters)."""
    spec = _spec(app, checklist, _symbols(symbols), backend, param_overrides)
    for name in [*(s.partition(":")[0] for s in skip), *(n for n in (from_step, only) if n)]:
        spec.index_of(name)
    _confirm_costs(app, spec, yes=yes)
    engine = Engine(app.settings, app.store, resources=app.resources)
    existing, run_id, lock = engine.claim_run(spec, new=new_run)
    if json_lines:
        pass
    elif existing is not None:
        click.echo(f"resuming run {run_id} (started {_ago(existing.created_at)}; --new starts a fresh one)")
    else:
        click.echo(f"run {run_id}: {spec.name} on the {app.settings.profile} profile, {len(spec.steps)} steps")
    selection = {"from_step": from_step, "only": only, "skip": _skips(skip, reason)}
    _drive(app, spec, run_id, json_lines=json_lines, lock=lock, **selection)


def _confirm_costs(app: App, spec: ChecklistSpec, *, yes: bool) -> None:
    """Off the sandbox, a checklist that launches instances spends money: the operator says so."""
    if yes or app.settings.is_sandbox or not any(s.step == "launch" for s in spec.steps):
        return
    launch = next(s for s in spec.steps if s.step == "launch")
    p = launch.params
    what = (
        f"this run launches a {getattr(p, 'instance_type', 'GPU')} spot instance on {app.settings.profile} "
        f"(budget ${getattr(p, 'budget_usd', 0):.2f}, at most {getattr(p, 'max_runtime_hours', 0):g} h)"
    )
    if not sys.stdin.isatty():
        raise UsageError(f"{what}; pass --yes to confirm")
    if not click.confirm(f"{what}. Go ahead?", default=False):
        raise UsageError("not confirmed; nothing was launched")


@click.command("resume")
@click.argument("run_id", required=False)
@click.option("--json", "json_lines", is_flag=True, help="One JSON event per line.")
@common_options
@pass_app
def resume_cmd(app: App, run_id: str | None, json_lines: bool) -> None:
    """Continue a run from its first unfinished step (the newest unfinished run by default)."""
    run = _find_run(app, run_id, unfinished=True)
    if run.status is RunStatus.SUCCEEDED:
        click.echo(f"run {run.id} already succeeded; nothing to do")
        return
    spec = load_checklist(
        run.checklist_path, profile=run.profile, overrides=run.params, limits=operator_limits(app.loaded)
    )
    if not json_lines:
        click.echo(f"resuming run {run.id} ({run.checklist}, {run.status})")
    _drive(app, spec, run.id, json_lines=json_lines)


def _find_run(app: App, run_id: str | None, *, unfinished: bool = False) -> RunRecord:
    if run_id:
        run = app.store.get_run(run_id)
        if run is None:
            raise StateError(f"no run {run_id!r}", hint="see `console runs`")
        return run
    run = app.store.latest_unfinished_run() if unfinished else next(iter(app.store.list_runs(1)), None)
    if run is None:
        raise UsageError(
            "no run to show" if not unfinished else "no unfinished run to resume",
            hint="start one with `console run --checklist retrain`",
        )
    return run


@click.command("status")
@click.argument("run_id", required=False)
@click.option("--json", "json_out", is_flag=True, help="Print the run as one JSON object.")
@common_options
@pass_app
def status_cmd(app: App, run_id: str | None, json_out: bool) -> None:
    """Show a run's steps with state, attempts, elapsed time and summary (the newest run by default)."""
    run = _find_run(app, run_id)
    steps = app.store.steps(run.id)
    driven = RunLock.is_held(run_dir(app.settings, run.id))
    if json_out:
        click.echo(
            json.dumps(
                {
                    "run_id": run.id,
                    "checklist": run.checklist,
                    "profile": run.profile,
                    "status": run.status,
                    "driven_now": driven,
                    "created_at": run.created_at,
                    "params": run.params,
                    "steps": [
                        {
                            "name": s.name,
                            "state": s.state,
                            "attempt": s.attempt,
                            "elapsed_s": s.elapsed,
                            "plan": s.plan,
                            "summary": s.summary,
                            "details": s.details,
                        }
                        for s in steps
                    ],
                    "instances": [i.__dict__ for i in app.store.instances(run_id=run.id)],
                },
                default=str,
            )
        )
        return
    console = output_console()
    title = f"run {run.id} · {run.checklist} · {run.profile} · {run.status}" + (" · being driven now" if driven else "")
    table = Table(title=title, title_justify="left")
    for col in ("#", "step", "state", "attempt", "elapsed", "summary"):
        table.add_column(col)
    for s in steps:
        elapsed = f"{s.elapsed:.1f}s" if s.elapsed is not None else ""
        table.add_row(str(s.idx + 1), s.name, s.state, str(s.attempt or ""), elapsed, s.summary or s.plan)
    console.print(table)


@click.command("runs")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@common_options
@pass_app
def runs_cmd(app: App, limit: int) -> None:
    """List recent runs, newest first."""
    runs = app.store.list_runs(limit)
    if not runs:
        click.echo("no runs yet; start one with `console run --checklist retrain`")
        return
    table = Table()
    for col in ("run", "checklist", "profile", "status", "started", "summary"):
        table.add_column(col)
    for r in runs:
        table.add_row(r.id, r.checklist, r.profile, r.status, _ago(r.created_at), r.summary)
    output_console().print(table)


@click.command("plan")
@click.option("--checklist", required=True, help="A shipped checklist name or a path to a .toml file.")
@click.option("--symbols", help="Comma-separated symbols (overrides the checklist).")
@common_options
@pass_app
def plan_cmd(app: App, checklist: str, symbols: str | None) -> None:
    """Print what each step would do. Touches nothing: no state, no network."""
    spec = _spec(app, checklist, _symbols(symbols))
    from console.checklist.engine import Engine as _Engine

    engine = _Engine(app.settings, _NoStore())  # type: ignore[arg-type]
    click.echo(f"{spec.name} ({spec.source}) on the {app.settings.profile} profile:")
    for i, (step, plan) in enumerate(engine.plan(spec), start=1):
        click.echo(f"{i:>2}. {step.name:<14} {plan}")
    for line in limit_lines(app.loaded, spec):
        click.echo(line)


class _NoStore:
    """Planning touches no state: no step has outputs yet, and anything else is a bug made loud."""

    def step_outputs(self, run_id: str, name: str) -> dict[str, Any]:
        return {}

    def __getattr__(self, name: str) -> Any:
        raise ConsoleError("planning must not touch the state store")


def _ago(ts: float) -> str:
    seconds = max(0, time.time() - ts)
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def register(cli: click.Group) -> None:
    for command in (run_cmd, resume_cmd, status_cmd, runs_cmd, plan_cmd):
        cli.add_command(command)
