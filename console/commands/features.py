"""`console features build | list | verify`: feature files from the store, and their counts."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from console.app import App, common_options, pass_app
from console.checklist.step import symbols_option
from console.commands.data import data_root_for
from console.errors import UsageError
from console.market_data import CountMismatch, verify_counts
from console.render import output_console
from training.data.market import check_symbol
from training.data.store import CandleStore
from training.features.build import tune_for_large_builds
from training.features.files import build_feature_file, load_inputs, update_feature_file
from training.features.spec import spec_for


def _symbols(value: str | None, app: App) -> list[str]:
    if value is None:
        return list(app.resources.feature_config().symbols)
    return symbols_option(value)


def _console() -> Console:
    return output_console()


@click.group("features")
def features_group() -> None:
    """Build, list and verify features."""


@features_group.command("build")
@click.option("--symbols", help="Comma-separated symbols (default: the configured ones).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data directory (default: <state>/data).")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory (default: <data>/features).")
@click.option("--full", is_flag=True, help="Rebuild every row, not only the rows new candles add.")
@common_options
@pass_app
def build_cmd(app: App, symbols: str | None, data_dir: str | None, out: str | None, full: bool) -> None:
    """Build FEATURES/<SYMBOL>.parquet for each symbol from the stored candles.

    A file already built from the same spec is brought up to date: only the rows new
    candles add (and the last week's part) are computed and written, and the result
    equals a full rebuild. ``--full`` rebuilds every row.
    """
    tune_for_large_builds()
    syms = _symbols(symbols, app)
    root = data_root_for(app, data_dir)
    # Without --out the files go beside the data: <data>/features.
    target = Path(out).expanduser() if out else root / "features"
    store = CandleStore(root)
    config = app.resources.feature_config()
    for symbol in syms:
        t = time.perf_counter()
        spec = spec_for(symbol, config)
        candles, fundamentals = load_inputs(store, spec)
        build = build_feature_file if full else update_feature_file
        report = build(spec, candles, fundamentals, target)
        click.echo(f"{report.summary()} in {time.perf_counter() - t:.1f}s ({report.feature_hash[:19]})")


@features_group.command("list")
@click.option("--symbol", required=True, help="The symbol whose features to list.")
@common_options
@pass_app
def list_cmd(app: App, symbol: str) -> None:
    """Every feature of a symbol, in order: name, family, description."""
    spec = spec_for(check_symbol(symbol), app.resources.feature_config())
    table = Table(
        title=f"{symbol}: {spec.count} features (spec {spec.version}, {spec.hash[:19]})", title_justify="left"
    )
    for col in ("#", "name", "family", "description"):
        table.add_column(col, justify="right" if col == "#" else "left")
    for i, f in enumerate(spec.features, 1):
        table.add_row(str(i), f.name, f.family, f.description)
    _console().print(table)


@features_group.command("verify")
@click.option("--symbols", help="Comma-separated symbols (default: the configured ones).")
@click.option("--out", type=click.Path(file_okay=False), help="Feature directory (default: <data>/features).")
@common_options
@pass_app
def verify_cmd(app: App, symbols: str | None, out: str | None) -> None:
    """Check each feature file against the configured counts (BTC-USD 73, ETH-USD 54, SOL-USD 73)."""
    syms = _symbols(symbols, app)
    rows = verify_counts(app.resources, syms, out=Path(out).expanduser() if out else None)
    table = Table(title="feature counts", title_justify="left")
    for col in ("symbol", "expected", "found", "status"):
        table.add_column(col, justify="right" if col in ("expected", "found") else "left")
    for r in rows:
        table.add_row(r.symbol, str(r.expected), "-" if r.found is None else str(r.found), "ok" if r.ok else r.problem)
    _console().print(table)
    unreadable = [r for r in rows if r.found is None]
    if len(unreadable) == 1:
        # The file's own one-line complaint: damaged, missing or foreign, and what to do.
        raise UsageError(unreadable[0].problem)
    if unreadable:
        names = ",".join(r.symbol for r in unreadable)
        raise UsageError(
            f"the feature files of {names.replace(',', ', ')} are damaged, unreadable or missing",
            hint=f"rebuild them with `console features build --symbols {names}`",
        )
    bad = [r for r in rows if not r.ok]
    if bad:
        raise CountMismatch(
            f"feature counts differ for {', '.join(r.symbol for r in bad)}",
            hint="rebuild with `console features build` or fix [features] in the config",
        )


def register(cli: click.Group) -> None:
    cli.add_command(features_group)
