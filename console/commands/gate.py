"""`console gate status | verify` and `console live -- COMMAND ...`.

`gate verify` exits 0 only with a valid pass for exactly the files in the models dir,
else 4 with the reason: for scripts and a live runtime's start-up. `live` verifies, then
replaces itself with the operator's command (``run_runtime_with_env.sh --mode live``)
with the models dir in its environment (``RC_MODELS_DIR``, ``MODELS_DIR``); without a
valid pass it exits 4 and runs nothing.
"""

from __future__ import annotations

import os
import shutil

import click

from console.app import App, common_options, pass_app
from console.commands.check import parse_symbols
from console.errors import UsageError
from runtime_checks import gate as gate_mod
from runtime_checks.errors import GateNotPassed


@click.group("gate")
def gate_group() -> None:
    """The pre-live gate: its record, and verification for these exact model files."""


@gate_group.command("status")
@click.option("--models", "models", type=click.Path(file_okay=False), help="Models directory (default <data>/models).")
@common_options
@pass_app
def status_cmd(app: App, models: str | None) -> None:
    """Show the current gate record and why it passes or not."""
    from console import checking as glue

    folder = glue.models_dir(app.resources, models)
    try:
        record = gate_mod.read_record(folder)
    except GateNotPassed as exc:
        record = None
        click.echo(f"gate record: {exc}")
    if record is None:
        remote = glue.remote_gate_record(app.resources, folder.expanduser().resolve())
        if remote is not None:
            record = remote[1]
            click.echo(f"(no record next to {folder}; the copy in {remote[0]} is shown)")
    if record is None:
        record = glue.latest_state_record(app.store)
        if record is not None:
            click.echo(f"(no record next to {folder}; the state store's latest is shown)")
    for line in gate_mod.describe(record):
        click.echo(line)
    try:
        glue.verify(app.resources, app.store, folder)
    except Exception as exc:  # the verdict is shown, not raised: status always exits 0
        click.echo(f"verdict: NOT valid: {exc}")
    else:
        click.echo("verdict: valid pass for exactly these model files and feature spec")


@gate_group.command("verify")
@click.option("--models", "models", type=click.Path(file_okay=False), help="Models directory (default <data>/models).")
@click.option("--symbols", help="Only these symbols must be covered (default: every symbol in the models dir).")
@common_options
@pass_app
def verify_cmd(app: App, models: str | None, symbols: str | None) -> None:
    """Exit 0 only with a valid, unexpired pass for exactly these files; else 4 with the reason."""
    wanted = parse_symbols(symbols)
    from console import checking as glue

    record = glue.verify(app.resources, app.store, glue.models_dir(app.resources, models), wanted)
    click.echo(f"gate: valid pass for {', '.join(record['symbols'])} until {gate_mod.utc_text(record['expires_at'])}")


@click.command("live", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--models", "models", type=click.Path(file_okay=False), help="Models directory (default <data>/models).")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@common_options
@pass_app
def live_cmd(app: App, models: str | None, command: tuple[str, ...]) -> None:
    """Verify the gate, then run COMMAND (after --) with the models dir in its environment."""
    from console import checking as glue

    folder = glue.models_dir(app.resources, models)
    program = shutil.which(command[0])
    if program is None:
        raise UsageError(f"cannot run {command[0]!r}: not found or not executable", hint="give the live runtime's path")
    record = glue.verify(app.resources, app.store, folder)  # GateFailed (exit 4) before anything runs
    env = {
        **os.environ,
        "RC_MODELS_DIR": str(folder.resolve()),
        "MODELS_DIR": str(folder.resolve()),
        "RC_GATE_ID": str(record["id"]),
    }
    os.execvpe(program, list(command), env)


def register(cli: click.Group) -> None:
    cli.add_command(gate_group)
    cli.add_command(live_cmd)
