"""`console schedule install | list | remove`: run a checklist monthly (`console.schedule`).

Exit codes: 0 done; 1 the scheduler (systemctl, crontab, launchctl) refused; 2 bad input (an
unknown checklist, a kind this machine lacks, no --monthly).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from console.app import App, common_options, pass_app
from console.errors import UsageError
from console.schedule import KINDS, default_kind, env_file, install, installed, plan, remove

_TARGET_HELP = "Write the files (and a crontab file) into this folder instead; touches no scheduler."


def _target(value: str | None) -> Path | None:
    return Path(value).expanduser().resolve() if value else None


@click.group("schedule")
def schedule_group() -> None:
    """Run a checklist on a schedule (a systemd user timer, a cron line, or a launchd agent)."""


@schedule_group.command("install")
@click.option("--checklist", required=True, help="The shipped checklist to run, e.g. investment.")
@click.option("--monthly", is_flag=True, help="On the 1st of each month at 03:00 (the only schedule so far).")
@click.option(
    "--kind", type=click.Choice(KINDS), help="Default: systemd where systemctl exists, launchd on macOS, else cron."
)
@click.option("--dry-run", is_flag=True, help="Show what would be written, write nothing.")
@click.option("--target-dir", type=click.Path(file_okay=False), help=_TARGET_HELP)
@common_options
@pass_app
def install_cmd(
    app: App, checklist: str, monthly: bool, kind: str | None, dry_run: bool, target_dir: str | None
) -> None:
    """Show what the schedule writes, then write it (nothing with --dry-run)."""
    from console.steps import load_checklist

    if not monthly:
        raise UsageError("say how often", hint="--monthly")
    load_checklist(checklist, profile=app.settings.profile)  # an unknown or broken checklist is refused here
    kind = kind or default_kind()
    target = _target(target_dir)
    if target is None and kind in ("systemd", "launchd", "cron"):
        tool = {"systemd": "systemctl", "launchd": "launchctl", "cron": "crontab"}[kind]
        if not shutil.which(tool):
            raise UsageError(
                f"this machine has no {tool} for a {kind} schedule", hint=f"choose --kind from {', '.join(KINDS)}"
            )
    extra = ["--profile", app.settings.profile]
    if app.loaded.config_path is not None:
        extra += ["--config", str(app.loaded.config_path)]
    extra += ["--state-dir", str(app.settings.state_dir)]
    planned = plan(kind, checklist, extra, target)
    for item in planned:
        click.echo(f"--- {item.path}")
        click.echo(item.text.rstrip("\n"))
        for argv in item.after:
            click.echo(f"--- then: {' '.join(argv)}")
    click.echo(f"(keys such as FRED_API_KEY come from {env_file()}, which you keep; none is written here)")
    if dry_run:
        click.echo("dry run: nothing written")
        return
    for line in install(kind, planned, target):
        click.echo(line)


@schedule_group.command("list")
@click.option("--target-dir", type=click.Path(file_okay=False), help=_TARGET_HELP)
@click.option("--json", "json_out", is_flag=True, help="Print as JSON.")
@common_options
@pass_app
def list_cmd(app: App, target_dir: str | None, json_out: bool) -> None:
    """The schedules installed, of every kind."""
    found = installed(_target(target_dir))
    if json_out:
        click.echo(json.dumps([s.__dict__ for s in found]))
        return
    if not found:
        click.echo("no schedules (console schedule install --checklist NAME --monthly)")
    for s in found:
        click.echo(f"{s.checklist}: {s.kind}, {s.when} ({s.where})")


@schedule_group.command("remove")
@click.option("--checklist", required=True, help="The checklist whose schedule to remove.")
@click.option("--target-dir", type=click.Path(file_okay=False), help=_TARGET_HELP)
@common_options
@pass_app
def remove_cmd(app: App, checklist: str, target_dir: str | None) -> None:
    """Remove a checklist's schedule (every kind); says so when there was none."""
    said = remove(checklist, _target(target_dir))
    for line in said or [f"no schedule for {checklist}"]:
        click.echo(line)


def register(cli: click.Group) -> None:
    cli.add_command(schedule_group)
