"""`console check` (stored check results in full) and `console check alignment`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from console.app import App, common_options, pass_app
from console.checklist.step import symbols_option
from console.errors import StepFailed
from console.render import output_console

if TYPE_CHECKING:  # pragma: no cover
    from runtime_checks.checks import CheckResult


def parse_symbols(value: str | None) -> list[str] | None:
    """``BTC-USD,ETH-USD`` as a validated list (None when not given)."""
    if value is None:
        return None
    return symbols_option(value)


def check_models_option(models: str | None, symbols: list[str] | None) -> None:
    """A ``--models`` directory that does not exist, or holds no model when no symbol is
    named, is refused before the heavier imports (and long before the sandbox)."""
    if not models:
        return
    from runtime_checks.models import models_root, symbols_in

    models_root(Path(models))
    if not symbols and not symbols_in(Path(models)):
        from runtime_checks.runner import pick_symbols

        pick_symbols(Path(models), symbols)  # refuses, with the one message for an empty models dir


def show_results(results: list[CheckResult], *, full: bool = True) -> None:
    """A table of results; with ``full``, each failed alignment's differences per source."""
    table = Table(title="check results (newest per symbol)", title_justify="left")
    for col in ("symbol", "check", "verdict", "summary"):
        table.add_column(col, overflow="fold")
    for r in results:
        verdict = "[green]pass[/]" if r.passed else ("[red]FAIL[/]" if r.blocking else "[yellow]fail (advisory)[/]")
        table.add_row(r.symbol, r.check, verdict, r.summary)
    console = output_console()
    console.print(table)
    if not full:
        return
    for r in results:
        if r.check == "alignment" and not r.passed and "counts" in r.details:
            console.print(
                f"[bold]{r.symbol}[/] counts: " + ", ".join(f"{k} {v}" for k, v in r.details["counts"].items())
            )
            for source, diff in r.details["differences"].items():
                for kind in ("missing", "extra", "moved"):
                    if diff[kind]:
                        items = [
                            m if isinstance(m, str) else f"{m['name']} ({m['from']}->{m['to']})" for m in diff[kind]
                        ]
                        console.print(f"  {source} {kind}: {', '.join(items)}")


@click.group("check", invoke_without_command=True)
@click.option("--json", "json_out", is_flag=True, help="Print the results as JSON.")
@common_options
@pass_app
@click.pass_context
def check_group(ctx: click.Context, app: App, json_out: bool) -> None:
    """Show the latest stored check results in full; `check alignment` runs the alignment check."""
    if ctx.invoked_subcommand is not None:
        return
    from console import checking as glue

    results = glue.latest_results(app.store)
    if json_out:
        click.echo(json.dumps([r.to_dict() for r in results], default=str))
        return
    if not results:
        click.echo("no check results yet; run `console check alignment` or `console dryrun`")
        return
    show_results(results)


@check_group.command("alignment")
@click.option("--symbols", help="Comma-separated symbols (default: every symbol with a model).")
@click.option("--models", "models", type=click.Path(file_okay=False), help="Models directory (default <data>/models).")
@click.option("--json", "json_out", is_flag=True, help="Print the results as JSON.")
@common_options
@pass_app
def alignment_cmd(app: App, symbols: str | None, models: str | None, json_out: bool) -> None:
    """Compare feature names, order, count and hash: training file, runtime builder, checkpoint."""
    wanted = parse_symbols(symbols)  # before the heavier imports: a typo is refused at once
    check_models_option(models, wanted)
    from console import checking as glue

    results = glue.alignment(app.resources, wanted, glue.models_dir(app.resources, models))
    glue.store_results(app.store, results)
    if json_out:
        click.echo(json.dumps([r.to_dict() for r in results], default=str))
    else:
        show_results(results)
    bad = [r.symbol for r in results if not r.passed]
    if bad:
        raise StepFailed(
            f"features are misaligned for {', '.join(bad)}",
            hint="rebuild features and retrain, or fix the feature spec",
        )


def register(cli: click.Group) -> None:
    cli.add_command(check_group)
