"""`console train regime | health`: one investment model from a file, trained through the backend.

The seed's single-model commands (``train_regime.py --data context.parquet --output ...``). The
file is checked here first (columns named, NaN days, gaps, too few days: exit 2, nothing
launched); then the `investment` checklist runs for that one unit with the data step and the
runtime's dry run skipped and nothing published: launch, sync, train on the leased instance
(never here), upload, terminate, and the model comes home into ``--output`` (a folder: the
family's ``weights.npz``, ``config.json``, ``metrics.json``, ``verdict.json``...).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click

from console.app import App, common_options, pass_app
from console.errors import UsageError

MODELS = {
    "regime": ("REGIME-DAILY", "context", ("gru", "transformer"), 32),
    "health": ("HEALTH-DAILY", "features", ("autoencoder", "vae"), 64),
}
"""Family -> its unit, its table, its model types and the seed's default batch size."""


def _train_one(
    app: App,
    family: str,
    data: str,
    output: str,
    model_type: str | None,
    epochs: int,
    batch_size: int | None,
    yes: bool = False,
) -> Path:
    from console.checklist.engine import Engine
    from console.commands.run import _confirm_costs, _drive
    from console.settings_shown import operator_limits
    from console.steps import load_checklist
    from training.families.investment.data import read_table

    unit, table, types, default_batch = MODELS[family]
    read_table(Path(data), table, min_days=160)  # bad input before anything is launched
    out = Path(output).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--output {out} exists and is not an empty folder", hint="give a new folder")
    features = app.resources.paths.features
    features.mkdir(parents=True, exist_ok=True)
    tmp = features / f".{unit}.parquet.rc-tmp"
    shutil.copy2(data, tmp)
    tmp.replace(features / f"{unit}.parquet")
    staging = out.parent / f".{out.name}.rc-staging"
    shutil.rmtree(staging, ignore_errors=True)
    overrides: dict[str, Any] = {
        "symbols": [unit],
        "epochs": epochs,
        f"{family}_type": model_type or types[0],
        f"{family}_batch_size": batch_size or default_batch,
        "skip_upload": True,
        "output_dir": str(staging),
    }
    spec = load_checklist(
        "investment", profile=app.settings.profile, overrides=overrides, limits=operator_limits(app.loaded)
    )
    _confirm_costs(app, spec, yes=yes)
    engine = Engine(app.settings, app.store, resources=app.resources)
    _, run_id, lock = engine.claim_run(spec, new=True)
    click.echo(f"run {run_id}: the {family} model ({overrides[f'{family}_type']}, {epochs} epochs) from {data}")
    skip = {"investment-data": "the data file was given (--data)", "investment-runtime": "one model: no runtime"}
    _drive(app, spec, run_id, json_lines=False, lock=lock, from_step=None, only=None, skip=skip)
    if not (staging / family / "config.json").is_file():
        raise UsageError(f"the run brought no {family} model home; see `console status {run_id}`")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.rmdir()
    (staging / family).replace(out)
    shutil.rmtree(staging, ignore_errors=True)
    return out


def _command(family: str) -> click.Command:
    unit, table, types, default_batch = MODELS[family]

    @click.command(family)
    @click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False),
                  help=f"The {table} table (parquet), as `console data backfill` writes it.")  # fmt: skip
    @click.option("--output", required=True, type=click.Path(), help="A new folder for the trained model.")
    @click.option("--model-type", type=click.Choice(types), help=f"Default {types[0]}.")
    @click.option("--epochs", type=click.IntRange(1, 1000), default=100, show_default=True)
    @click.option("--batch-size", type=click.IntRange(1, 4096), help=f"Default {default_batch}.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation of the instance it launches.")
    @common_options
    @pass_app
    def train_model(
        app: App, data: str, output: str, model_type: str | None, epochs: int, batch_size: int | None, yes: bool
    ) -> None:
        folder = _train_one(app, family, data, output, model_type, epochs, batch_size, yes)
        click.echo(f"{family} model in {folder}")

    train_model.help = f"Train the {family} model on --data through the backend (never here); the model into --output."
    return train_model


def add_investment_commands(group: click.Group) -> None:
    for family in MODELS:
        group.add_command(_command(family))
