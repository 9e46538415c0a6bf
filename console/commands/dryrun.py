"""`console dryrun`: the live path without orders, then the pre-live gate's verdict.

Exit codes: 0 the gate passed, 4 it did not (the reasons are printed and recorded),
2 bad input (empty models dir, torn checkpoint, stale candles ...).
"""

from __future__ import annotations

import click

from console.app import App, common_options, pass_app
from console.commands.check import check_models_option, parse_symbols
from console.errors import GateFailed


@click.command("dryrun")
@click.option("--symbols", help="Comma-separated symbols (default: every symbol with a model).")
@click.option(
    "--iterations",
    type=click.IntRange(1, 10_000),
    default=5,
    show_default=True,
    help="Predictions to print per symbol, over the newest bars.",
)
@click.option("--models", "models", type=click.Path(file_okay=False), help="Models directory (default <data>/models).")
@common_options
@pass_app
def dryrun_cmd(app: App, symbols: str | None, iterations: int, models: str | None) -> None:
    """Fetch, build features, load models, predict (no orders); record the gate for these exact files."""
    wanted = parse_symbols(symbols)  # before the heavier imports: a typo is refused at once
    check_models_option(models, wanted)
    from console import checking as glue

    outcome = glue.dryrun(app.resources, app.store, wanted, glue.models_dir(app.resources, models),
                          iterations, on_line=click.echo)  # fmt: skip
    for r in outcome.results:
        if r.check == "dryrun":
            click.echo(r.summary)
    record = outcome.record
    if not outcome.passed:
        for reason in record["reasons"]:
            click.echo(f"gate: {reason}")
        raise GateFailed(f"gate failed: {record['reasons'][0]}",
                         hint=f"{len(record['reasons'])} reason(s) above; nothing may go live")  # fmt: skip
    click.echo(f"gate: PASS for {', '.join(record['symbols'])} ({len(record['model_hashes'])} model files pinned, "
               f"expires in {app.settings.gate.expiry_hours:g} h)")  # fmt: skip


def register(cli: click.Group) -> None:
    cli.add_command(dryrun_cmd)
