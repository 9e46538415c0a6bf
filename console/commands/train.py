"""`console train remote`: the train step by itself, on the current run's leased instance.

The same step the checklist runs (detached scheduler, live progress, checkpoints copied
off the host, a lost spot instance replaced), driven by the engine for one run with
``--only``: the run's lock, heartbeat, step log and state all apply. The run is the one
named with ``--run``, else the newest run whose instance is still up and leased (the
launch and sync steps have run and terminate has not). Flags override the run's own
parameters for this training only; a train step that already finished is run again.
"""

from __future__ import annotations

import dataclasses

import click

from console.app import App, common_options, pass_app
from console.checklist.spec import ChecklistSpec
from console.checklist.step import StepState
from console.errors import UsageError
from console.outputs import LaunchOutputs, SyncOutputs
from console.state import RunRecord, StateStore
from console.steps import load_checklist

TRAIN_STEP = "train"
NO_LEASE_HINT = "launch and sync one first: `console run --checklist retrain --only launch`, then `--only sync`"


class ConcurrencyType(click.ParamType):
    """``--max-concurrent``: a whole number from 1 to 64, or ``auto`` (sized on the host to its GPUs)."""

    name = "N|auto"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if text.isascii() and text.isdigit() and 1 <= int(text) <= 64:
            return int(text)
        self.fail(f"{value!r} is neither a whole number from 1 to 64 nor auto", param, ctx)


def leased_run(app: App, run_id: str | None) -> tuple[RunRecord, str]:
    """The run to train for and the name of its train step; `UsageError` when it has no
    live, leased instance (or no run has one)."""
    store = app.store
    if run_id is not None:
        run = store.get_run(run_id)
        if run is None:
            raise UsageError(f"no run {run_id!r}", hint="see `console runs`")
        problem = _lease_problem(app, run)
        if problem:
            raise UsageError(f"run {run.id} has no leased instance to train on ({problem})", hint=NO_LEASE_HINT)
        return run, _train_step_name(store, run)
    for run in store.list_runs(50):
        if _lease_problem(app, run) is None:
            return run, _train_step_name(store, run)
    raise UsageError("no run has a leased instance to train on", hint=NO_LEASE_HINT)


def _train_step_name(store: StateStore, run: RunRecord) -> str:
    names = [s.name for s in store.steps(run.id)]
    if TRAIN_STEP not in names:
        raise UsageError(
            f"run {run.id} ({run.checklist}) has no train step",
            hint="use a run of a checklist that trains, e.g. retrain",
        )
    return TRAIN_STEP


def _lease_problem(app: App, run: RunRecord) -> str | None:
    """Why the run cannot train now, or None: its launched instance must be live in the
    state store and the sync step must have leased it."""
    raw = app.store.step_outputs(run.id, "launch")
    launched = LaunchOutputs.model_validate(raw) if raw.get("instance_id") else None
    if launched is None:
        return "nothing launched"
    live = {r.id for r in app.store.instances(run_id=run.id, active_only=True)}
    if launched.instance_id not in live:
        return f"its instance {launched.instance_id} is not running"
    if not SyncOutputs.model_validate(app.store.step_outputs(run.id, "sync")).lease_path:
        return f"its instance {launched.instance_id} was never synced"
    return None


def _spec_for(run: RunRecord, overrides: dict, *, force: bool) -> ChecklistSpec:
    spec = load_checklist(run.checklist_path, profile=run.profile, overrides={**run.params, **overrides})
    if not force:
        return spec
    # --force retrains from scratch; a retry of the step must not throw its progress away again.
    steps = tuple(dataclasses.replace(s, retries=0) if s.name == TRAIN_STEP else s for s in spec.steps)
    return dataclasses.replace(spec, steps=steps)


@click.group("train")
def train_group() -> None:
    """Training outside the checklist."""


@train_group.command("remote")
@click.option("--symbols", help="Comma-separated symbols, e.g. BTC-USD,ETH-USD (default: the run's).")
@click.option("--epochs", type=click.IntRange(1, 1000), help="Epochs per symbol (default: the run's).")
@click.option("--mode", type=click.Choice(["sequential", "parallel", "hybrid"]), help="How symbols share the host.")
@click.option(
    "--max-concurrent", type=ConcurrencyType(), help="Symbols at once in hybrid mode, or auto (sized to the GPUs)."
)
@click.option("--force", is_flag=True, help="Retrain symbols that already succeeded, from scratch.")
@click.option("--run", "run_id", help="The run whose instance to train on (default: the newest with a leased one).")
@click.option("--json", "json_lines", is_flag=True, help="One JSON event per line.")
@common_options
@pass_app
def train_remote(
    app: App,
    symbols: str | None,
    epochs: int | None,
    mode: str | None,
    max_concurrent: int | str | None,
    force: bool,
    run_id: str | None,
    json_lines: bool,
) -> None:
    """Run the train step on the current run's leased instance, following its progress."""
    from console.commands.run import _drive, _symbols

    chosen = _symbols(symbols)
    run, step_name = leased_run(app, run_id)
    synced = list(run.params.get("symbols") or [])
    missing = [s for s in chosen or [] if s not in synced]
    if missing:
        raise UsageError(
            f"{', '.join(missing)} not synced to run {run.id}'s instance (it has {', '.join(synced)})",
            hint="start a run with those symbols: `console run --checklist retrain --symbols ...`",
        )
    overrides = {
        "symbols": chosen,
        "epochs": epochs,
        "mode": mode,
        "max_concurrent": max_concurrent,
        "force": True if force else None,
    }
    spec = _spec_for(run, {k: v for k, v in overrides.items() if v is not None}, force=force)
    record = app.store.get_step(run.id, step_name)
    if record is not None and StepState(record.state).finished:
        from console.checklist.engine import Engine

        Engine(app.settings, app.store, resources=app.resources).reset_step(
            run.id, step_name, "run again by `console train remote`"
        )
    if not json_lines:
        instance_id = app.store.step_outputs(run.id, "launch").get("instance_id")
        click.echo(f"training for run {run.id} on {instance_id}")
    _drive(app, spec, run.id, json_lines=json_lines, only=step_name)


def register(cli: click.Group) -> None:
    from console.commands.train_cloud import add_cloud_commands
    from console.commands.train_investment import add_investment_commands

    add_cloud_commands(train_group)
    add_investment_commands(train_group)
    cli.add_command(train_group)
