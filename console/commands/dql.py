"""`console dql train | evaluate | report | full-workflow | submit`: the deep-Q trading agent (seed 004).

``full-workflow`` is the runbook's single entry point: it checks the data file, puts it in
the features folder, runs the shipped ``dql`` checklist on it (launch, sync, train on the
leased instance -- never here --, upload, terminate, download; the fetch and feature steps
are skipped, the file is given), then judges the agent it brought home and writes
``results/<experiment>/report.html``. ``train`` is the same without the report; ``evaluate``
judges a saved agent on a data file's test part; ``report`` writes the page for one.
``submit --backend batch`` runs the full workflow as the container's ``dql`` job on AWS
Batch, several experiments as one array job (`console.dql_batch`).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import click

from console.app import App, common_options, pass_app
from console.errors import ConsoleError, UsageError

AGENT_TYPES = ("dqn", "custom")
BACKENDS = ("ssh",)
"""Backends that run the dql checklist (`console dql submit --backend batch` runs it as a Batch job)."""
SUBMIT_BACKENDS = ("batch",)
_EXPERIMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _experiment(value: str) -> str:
    if not _EXPERIMENT.match(value):
        raise UsageError(f"experiment name {value!r} must be letters, digits, . _ - (at most 64)")
    return value


def _check_data_file(path: str, episode_length: int, window: int) -> tuple[Path, str]:
    """The data file checked as the training host will check it; its symbol."""
    from training.rl.market import load_market

    market = load_market(Path(path), window=window, longest_feature_window=200, min_rows_per_part=episode_length)
    return Path(path), market.symbol


def _train(
    app: App, data_file: str, agent_type: str, episodes: int, episode_length: int, window: int, backend: str, yes: bool
) -> Path:
    """Run the dql checklist on ``data_file``; the model folder it brought home."""
    from console.checklist.engine import Engine
    from console.commands.run import _confirm_costs, _drive
    from console.settings_shown import operator_limits
    from console.steps import load_checklist

    if backend not in BACKENDS:
        raise UsageError(
            f"backend {backend!r} does not run the dql checklist (supported: {', '.join(BACKENDS)})",
            hint="on AWS Batch: `console dql submit --backend batch ...`",
        )
    path, symbol = _check_data_file(data_file, episode_length, window)
    features = app.resources.paths.features
    features.mkdir(parents=True, exist_ok=True)
    target = features / f"{symbol}.parquet"
    if path.resolve() != target.resolve():
        tmp = features / f".{symbol}.parquet.rc-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, tmp)
        if target.is_dir():
            shutil.rmtree(target)
        tmp.replace(target)
    overrides = {
        "symbols": [symbol],
        "backend": backend,
        "epochs": episodes,
        "family_params": {
            "agent_type": agent_type,
            "episodes": episodes,
            "episode_length": episode_length,
            "window": window,
        },
    }
    spec = load_checklist("dql", profile=app.settings.profile, overrides=overrides, limits=operator_limits(app.loaded))
    _confirm_costs(app, spec, yes=yes)
    engine = Engine(app.settings, app.store, resources=app.resources)
    _, run_id, lock = engine.claim_run(spec, new=True)
    click.echo(f"run {run_id}: dql ({agent_type}, {episodes} episodes) on {symbol} from {path}")
    skip = {name: "the data file was given (--data-file)" for name in ("fetch", "features", "verify-counts")}
    skip["dql-report"] = "console dql writes the report under the experiment's name"
    _drive(app, spec, run_id, json_lines=False, lock=lock, from_step=None, only=None, skip=skip)
    base = app.resources.paths.models / "models" / symbol
    folders = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    if not folders:
        raise UsageError(f"the run brought no {symbol} model home; see `console status {run_id}`")
    return folders[-1]


def _report(folder: Path, data_file: str, experiment: str) -> Path:
    from training.families.dql.judged import judge_saved

    judged = judge_saved(folder, Path(data_file))
    for line in judged.verdict.lines():
        click.echo(f"  {line}")
    click.echo("verdict: " + ("passed" if judged.verdict.passed else "FAILED (not champion, cannot go live)"))
    return judged.write_report(Path("results") / experiment, experiment)


def _training_options(fn: Any) -> Any:
    for option in reversed(
        (
            click.option("--agent-type", type=click.Choice(AGENT_TYPES), default="custom", show_default=True),
            click.option("--data-file", required=True, type=click.Path(exists=True), help="A feature file."),
            click.option("--episodes", type=click.IntRange(min=1), default=30, show_default=True),
            click.option("--episode-length", type=click.IntRange(min=16), default=256, show_default=True),
            click.option("--window", type=click.IntRange(min=1, max=512), default=16, show_default=True),
            click.option("--backend", default="ssh", show_default=True, help="Where it trains (never here)."),
            click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation of costly steps."),
        )
    ):
        fn = option(fn)
    return fn


@click.group("dql")
def dql_group() -> None:
    """The deep-Q trading agent: train remotely, evaluate, report (seed runbook 004)."""


@dql_group.command("train")
@_training_options
@common_options
@pass_app
def dql_train(
    app: App, agent_type: str, data_file: str, episodes: int, episode_length: int, window: int, backend: str, yes: bool
) -> None:
    """Train an agent on DATA_FILE through the backend (the dql checklist without fetching)."""
    folder = _train(app, data_file, agent_type, episodes, episode_length, window, backend, yes)
    click.echo(f"model: {folder}")


@dql_group.command("full-workflow")
@_training_options
@click.option("--experiment-name", required=True, help="results/<name>/ gets the report.")
@common_options
@pass_app
def dql_full_workflow(
    app: App,
    agent_type: str,
    data_file: str,
    episodes: int,
    episode_length: int,
    window: int,
    backend: str,
    yes: bool,
    experiment_name: str,
) -> None:
    """Train (remotely), evaluate and report: the runbook's single entry point."""
    experiment = _experiment(experiment_name)
    folder = _train(app, data_file, agent_type, episodes, episode_length, window, backend, yes)
    page = _report(folder, data_file, experiment)
    click.echo(f"model: {folder}")
    click.echo(f"report: {page}")


@dql_group.command("evaluate")
@click.option("--model", "model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data-file", required=True, type=click.Path(exists=True))
@common_options
@pass_app
def dql_evaluate(app: App, model: str, data_file: str) -> None:
    """Judge a saved agent on DATA_FILE's test part, after costs, against the baselines."""
    from training.families.dql.judged import judge_saved

    judged = judge_saved(Path(model), Path(data_file))
    m = judged.evaluation.metrics
    click.echo(
        f"{judged.evaluation.unit}: total return {m['total_return']:+.2%}, sharpe {m['sharpe']:.2f}, "
        f"max drawdown {m['max_drawdown']:.2%}, turnover {m['turnover']:.3f}, hit rate {m['hit_rate']:.1%}"
    )
    for line in judged.verdict.lines():
        click.echo(f"  {line}")
    click.echo("verdict: " + ("passed" if judged.verdict.passed else "FAILED (not champion, cannot go live)"))


@dql_group.command("report")
@click.option("--model", "model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data-file", required=True, type=click.Path(exists=True))
@click.option("--experiment-name", required=True)
@common_options
@pass_app
def dql_report(app: App, model: str, data_file: str, experiment_name: str) -> None:
    """Write results/<experiment>/report.html (PNG figures beside it) for a saved agent."""
    page = _report(Path(model), data_file, _experiment(experiment_name))
    click.echo(f"report: {page}")


@dql_group.command("submit")
@click.option("--backend", type=click.Choice(SUBMIT_BACKENDS), default="batch", show_default=True)
@click.option("--agent-type", "agent_types", type=click.Choice(AGENT_TYPES), multiple=True, default=("custom",),
              show_default=True, help="Repeat for several experiments.")  # fmt: skip
@click.option("--data-file", "data_files", required=True, multiple=True, type=click.Path(exists=True),
              help="A feature file; repeat for several experiments.")  # fmt: skip
@click.option("--episodes", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--episode-length", type=click.IntRange(min=16), default=256, show_default=True)
@click.option("--window", type=click.IntRange(min=1, max=512), default=16, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=5, show_default=True,
              help="Episodes between checkpoints (a retried child resumes from the last).")  # fmt: skip
@click.option("--experiment-name", default="dql", show_default=True, help="results/<name>[-<agent>-<symbol>]/.")
@common_options
@pass_app
def dql_submit(
    app: App,
    backend: str,
    agent_types: tuple[str, ...],
    data_files: tuple[str, ...],
    episodes: int,
    episode_length: int,
    window: int,
    checkpoint_every: int,
    experiment_name: str,
) -> None:
    """Train, evaluate and report as one AWS Batch job (an array job for several experiments)."""
    from console.dql_batch import plan_experiments, submit_on_batch
    from training.families.dql.params import DqlParams

    experiment = _experiment(experiment_name)
    files = [_check_data_file(f, episode_length, window) for f in data_files]
    planned = plan_experiments(experiment, agent_types, files)
    agent = {
        "episode_length": episode_length,
        "env": {"window": window},
        "agent": {"checkpoint_every": checkpoint_every},
    }
    DqlParams.from_mapping({**agent, "episodes": episodes})  # refused here (exit 2), not in the job
    rows = submit_on_batch(app, planned, episodes=episodes, agent=agent, echo=click.echo)
    failed = [r for r in rows if r.get("state") != "succeeded"]
    for row in rows:
        if row.get("state") != "succeeded":
            click.echo(f"{row.get('experiment')}: FAILED: {row.get('why', '')}")
            continue
        m = row.get("metrics") or {}
        verdict = "passed" if row.get("passed") else "FAILED (not champion, cannot go live)"
        click.echo(
            f"{row['experiment']} ({row['agent_type']}, {row['unit']}): total return {m.get('total_return', 0):+.2%}, "
            f"sharpe {m.get('sharpe', 0):.2f}; verdict: {verdict}"
        )
        click.echo(f"  model: {row['model']}")
        click.echo(f"  report: {row['report']}")
    missing = len(planned) - len(rows)
    if failed or missing:
        raise ConsoleError(f"{len(failed) + missing} of {len(planned)} experiments did not finish; see above")


def register(cli: click.Group) -> None:
    cli.add_command(dql_group)
