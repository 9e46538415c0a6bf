"""`console train cloud | cloud-status | cloud-list`: seed 000's managed cloud training.

    console train cloud BTC-USD --provider sagemaker --days 365 --epochs 50 [--timeframe 1h] [--no-wait]
    console train cloud BTC-USD --provider local --days 30 --epochs 10   # the sandbox's job runner
    console train cloud-status JOB_ID     state, secondary state, epoch, billable vs training s, saving
    console train cloud-list BTC-USD [--model-type lstm]                 model versions in the store

``cloud`` runs the shipped ``cloud-train`` checklist for one symbol (fetch, features, verify,
train as a SageMaker job, upload, download) as a new run, so it is resumable and recorded
like any run; ``--timeframe 1h`` trains on hourly candles (features built on them, into
``features/1h/``; the model's features.json records the timeframe); ``--no-wait`` submits the job and ends (follow it with ``cloud-status``).
``--provider local`` is the sandbox's SageMaker job runner: off the sandbox profile it is
refused like any local training (exit 3). Off the sandbox a missing role or bucket is a
one-line error naming the setting and ``console infra deploy`` (exit 2), before anything runs.
"""

from __future__ import annotations

import json
from typing import Any

import click

from console.app import App, common_options, pass_app
from console.errors import GuardRefused, UsageError

CHECKLIST = "cloud-train"
PROVIDERS = ("sagemaker", "local")


def managed_backend(app: App, run_id: str = "") -> Any:
    """The sagemaker backend as the settings describe it (settings errors are exit 2)."""
    return app.resources.backend("sagemaker", run_id=run_id)


def add_cloud_commands(group: click.Group) -> None:
    group.add_command(train_cloud)
    group.add_command(cloud_status)
    group.add_command(cloud_list)


@click.command("cloud")
@click.argument("symbol")
@click.option("--provider", type=click.Choice(PROVIDERS), help="sagemaker, or local (the sandbox's job runner).")
@click.option("--days", type=click.IntRange(1, 3650), help="Days of candles to train on (default: the checklist's).")
@click.option("--epochs", type=click.IntRange(1, 1000), help="Epochs (default: the checklist's).")
@click.option("--timeframe", default="1m", show_default=True, help="Candles the model trains on: 1m, 5m, 15m or 1h.")
@click.option("--no-wait", is_flag=True, help="Submit the job and return; follow with `console train cloud-status`.")
@click.option("--json", "json_lines", is_flag=True, help="One JSON event per line.")
@common_options
@pass_app
def train_cloud(
    app: App,
    symbol: str,
    provider: str | None,
    days: int | None,
    epochs: int | None,
    timeframe: str,
    no_wait: bool,
    json_lines: bool,
) -> None:
    """Train SYMBOL as a managed SageMaker job and bring the model home."""
    from console.checklist.engine import Engine
    from console.commands.run import _drive
    from console.settings_shown import operator_limits
    from console.steps import load_checklist
    from training.data.market import TIMEFRAMES

    if timeframe not in TIMEFRAMES:
        raise UsageError(f"unknown timeframe {timeframe!r}", hint=f"use one of {', '.join(TIMEFRAMES)}")

    chosen = provider or (app.settings.cloud_provider if app.settings.cloud_provider in PROVIDERS else "sagemaker")
    if chosen == "local" and not app.settings.is_sandbox:
        raise GuardRefused(
            f"refusing to train locally: --provider local is the sandbox's job runner and the profile is "
            f"{app.settings.profile}",
            hint="use --provider sagemaker",
        )
    if not app.settings.is_sandbox:
        managed_backend(app)  # role and bucket set, or a one-line error before any run exists
    overrides: dict[str, Any] = {"symbols": [symbol], "days": days, "epochs": epochs, "wait": not no_wait}
    if timeframe != "1m":  # rows of longer candles: only those are fetched (no multi-timeframe features)
        overrides.update(timeframe=timeframe, timeframes=[timeframe])
    spec = load_checklist(
        CHECKLIST,
        profile=app.settings.profile,
        overrides={k: v for k, v in overrides.items() if v is not None},
        limits=operator_limits(app.loaded),
    )
    engine = Engine(app.settings, app.store, resources=app.resources)
    _, run_id, lock = engine.claim_run(spec, new=True)
    if not json_lines:
        where = "the sandbox's SageMaker" if app.settings.is_sandbox else f"SageMaker in {app.settings.aws_region}"
        click.echo(f"run {run_id}: {symbol} ({timeframe} candles) on {where}{' (submit only)' if no_wait else ''}")
    skip = {"upload": "--no-wait: the job is still running", "download": "--no-wait: nothing uploaded yet"}
    _drive(app, spec, run_id, json_lines=json_lines, lock=lock, skip=skip if no_wait else {})


@click.command("cloud-status")
@click.argument("job_id")
@click.option("--json", "json_out", is_flag=True, help="Print the job as one JSON object.")
@common_options
@pass_app
def cloud_status(app: App, job_id: str, json_out: bool) -> None:
    """One SageMaker job: state, secondary state, epoch, billable vs training seconds, saving."""
    from remote.errors import ProviderError

    backend = managed_backend(app)
    try:
        found = backend.job_report(job_id)
    except ProviderError as exc:
        if exc.code == "NotFound":
            raise UsageError(
                f"no SageMaker training job named {job_id!r}", hint="see `console train cloud-list`"
            ) from None
        raise
    if json_out:
        click.echo(json.dumps(found, default=str))
        return
    saving = found["saving_pct"]
    lines = [
        f"job        {found['job']}  ({found['instance_type']}, {'managed spot' if found['spot'] else 'on demand'})",
        f"state      {found['status']} / {found['secondary']}",
        f"epoch      {found['epoch_line'] or 'no epoch yet'}",
        f"seconds    {found['training_s']} training, {found['billable_s']} billable"
        + (f" (managed spot saved {saving:.0f}%)" if saving is not None else ""),
    ]
    if found["failure_reason"]:
        lines.append(f"reason     {found['failure_reason']}")
    if found["model"]:
        lines.append(f"model      {found['model']}")
    click.echo("\n".join(lines))


@click.command("cloud-list")
@click.argument("symbol")
@click.option("--model-type", help="Only this model family (e.g. lstm).")
@click.option("--json", "json_out", is_flag=True, help="Print the rows as JSON.")
@common_options
@pass_app
def cloud_list(app: App, symbol: str, model_type: str | None, json_out: bool) -> None:
    """Model versions of SYMBOL in the artifact store (S3)."""
    from console.cloud_listing import model_versions
    from training.errors import TrainingError
    from training.registry import check_symbol

    try:
        symbol = check_symbol(symbol)
    except TrainingError as exc:
        raise UsageError(str(exc), hint="a pair like BTC-USD") from None
    rows = model_versions(app.resources.artifact_store(), symbol, model_type)
    if not rows:
        kind = f" {model_type}" if model_type else ""
        raise UsageError(
            f"no{kind} models of {symbol} in {app.resources.artifact_store().describe()}",
            hint=f"train one: `console train cloud {symbol}`",
        )
    if json_out:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(
            f"{row['version']}  {row['model']}  {row['family'] or '?':5}  run {row['run_id']}  "
            f"{row['trained_date']}  {row['gpu']}  {'passed' if row['passed'] else 'did not pass'}"
        )
