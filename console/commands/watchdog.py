"""`console watchdog run | start | stop | status | once`: the process that terminates what outlived its purpose."""

from __future__ import annotations

import json
import time

import click

from console.app import App, common_options, pass_app
from console.state import InstanceRecord
from console.watchdog import (
    PassReport,
    run_foreground,
    run_once,
    start_background,
    stop_background,
    watchdog_status,
)


@click.group("watchdog")
def watchdog_group() -> None:
    """Run or control the watchdog (one per state directory)."""


@watchdog_group.command("run")
@common_options
@pass_app
def run_cmd(app: App) -> None:
    """Watch in the foreground until Ctrl-C or SIGTERM."""
    run_foreground(app.resources, app.store)


@watchdog_group.command("start")
@common_options
@pass_app
def start_cmd(app: App) -> None:
    """Start the watchdog in the background (refused if one already runs)."""
    pid = start_background(app.settings, config_path=app.loaded.config_path)
    click.echo(f"watchdog started (pid {pid}), passing every {app.settings.watchdog.interval_s:g}s")


@watchdog_group.command("stop")
@common_options
@pass_app
def stop_cmd(app: App) -> None:
    """Stop the background watchdog."""
    pid = stop_background(app.settings)
    click.echo(f"watchdog {pid} stopped")


@watchdog_group.command("status")
@click.option("--json", "json_out", is_flag=True, help="Print as one JSON object.")
@common_options
@pass_app
def status_cmd(app: App, json_out: bool) -> None:
    """Say whether the watchdog runs, and what its last pass saw and did."""
    status = watchdog_status(app.settings)
    if json_out:
        recent = [
            {"instance_id": r.id, "run_id": r.run_id, "terminated_at": r.terminated_at, "reason": r.terminate_reason}
            for r in _recent_terminations(app)
        ]
        click.echo(
            json.dumps(
                {"running": status.running, "pid": status.pid, "last_pass": status.last_pass, "recent": recent},
                default=str,
            )
        )
        return
    click.echo(f"watchdog: running (pid {status.pid})" if status.running else "watchdog: not running")
    last = status.last_pass
    if last:
        ago = time.time() - float(last.get("last_pass_at", 0))
        click.echo(
            f"last pass {ago:.0f}s ago: {last.get('seen', 0)} instance(s) seen, "
            f"terminated {', '.join(last.get('terminated') or []) or 'none'}"
            + (f", NOT confirmed: {', '.join(last['failed'])}" if last.get("failed") else "")
            + (
                f", waiting for upload: {', '.join(last['waiting_for_upload'])}"
                if last.get("waiting_for_upload")
                else ""
            )
            + (f"; error: {last['error']}" if last.get("error") else "")
        )
    for record in _recent_terminations(app):
        ago = (time.time() - (record.terminated_at or 0)) / 60
        click.echo(f"  {record.id} ({record.run_id or 'no run'}) ended {ago:.0f} min ago: {record.terminate_reason}")
    if not status.running:
        click.echo("start it with `console watchdog start` (a launch starts it too)")


RECENT_S = 86400.0


def _recent_terminations(app: App, limit: int = 10) -> list[InstanceRecord]:
    """Instances that ended in the last day, newest first, with the reason each was recorded with."""
    since = time.time() - RECENT_S
    ended = [r for r in app.store.instances() if r.terminated_at and r.terminated_at >= since]
    return sorted(ended, key=lambda r: r.terminated_at or 0, reverse=True)[:limit]


@watchdog_group.command("once")
@common_options
@pass_app
def once_cmd(app: App) -> None:
    """One pass now (for cron or a systemd timer); does nothing when the watchdog runs."""
    report = run_once(app.resources, app.store)
    if report is None:
        click.echo("a watchdog is running for this state dir; its passes cover it")
        return
    click.echo(_describe(report))
    if report.failed or report.error:  # cron and systemd see a failing pass
        raise click.exceptions.Exit(1)


def _describe(report: PassReport) -> str:
    if report.error:
        return f"watchdog pass: {report.error}"
    lines = [f"watchdog pass: {report.seen} instance(s) seen"]
    for v in report.verdicts:
        state = (
            "terminated"
            if v.instance_id in report.terminated
            else "waiting for upload"
            if v.instance_id in report.waiting_for_upload
            else "NOT confirmed; retry"
        )
        lines.append(f"  {v.instance_id} ({v.rule}): {v.reason} -> {state}")
    return "\n".join(lines)


def register(cli: click.Group) -> None:
    cli.add_command(watchdog_group)
