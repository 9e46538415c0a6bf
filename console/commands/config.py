"""`console config show`: the effective settings, where each came from, secrets masked."""

from __future__ import annotations

import json

import click
from rich.table import Table

from console.app import App, common_options, pass_app
from console.render import output_console
from console.settings import describe_settings
from console.settings_shown import limit_lines


@click.group("config")
def config_group() -> None:
    """Inspect settings."""


@config_group.command("show")
@click.option("--json", "json_out", is_flag=True, help="Print as JSON.")
@common_options
@pass_app
def show_cmd(app: App, json_out: bool) -> None:
    """Print every effective setting with its source (default, file, env or flag); secrets masked."""
    rows = describe_settings(app.loaded)
    if json_out:
        click.echo(json.dumps({r.name: {"value": r.value, "source": r.source} for r in rows}))
        return
    where = str(app.loaded.config_path) if app.loaded.config_path else "none"
    table = Table(title=f"profile {app.settings.profile} · config file: {where}", title_justify="left")
    for col in ("setting", "value", "source"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.name, r.value, r.source)
    output_console().print(table)
    for line in limit_lines(app.loaded):
        click.echo(line)


def register(cli: click.Group) -> None:
    cli.add_command(config_group)
