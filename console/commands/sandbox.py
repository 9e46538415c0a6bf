"""`console sandbox up | down | status`: the local stand-in cloud (moto, SSH hosts, market simulator)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from console.app import App, common_options, pass_app


@click.group("sandbox")
def sandbox_group() -> None:
    """Start, stop or inspect the sandbox daemon (one per state directory)."""


def _state_dir(app: App) -> Path:
    return Path(app.settings.state_dir).expanduser()


@sandbox_group.command("up")
@click.option("--json", "json_out", is_flag=True, help="Print the endpoints as one JSON object.")
@common_options
@pass_app
def up_cmd(app: App, json_out: bool) -> None:
    """Start the sandbox if it is not running; print its endpoints."""
    endpoints = app.resources.sandbox()
    if json_out:
        click.echo(
            json.dumps(
                {
                    "pid": endpoints.pid,
                    "moto_url": endpoints.moto_url,
                    "market_url": endpoints.market_url,
                    "region": endpoints.region,
                    "market_mode": endpoints.market_mode,
                    "market_seed": endpoints.market_seed,
                    "batch_running": endpoints.batch_running,
                    "market_clock_shift_s": endpoints.market_clock_shift_s,
                }
            )
        )
        return
    click.echo(f"sandbox up (pid {endpoints.pid})")
    click.echo(f"  cloud (moto):     {endpoints.moto_url}  region {endpoints.region}, prices: {endpoints.price_source}")
    click.echo(
        f"  market simulator: {endpoints.market_url or 'not available'}"
        + (f"  ({endpoints.market_mode} market, seed {endpoints.market_seed})" if endpoints.market_url else "")
    )
    if endpoints.market_url:
        market_now = datetime.fromtimestamp(time.time() - endpoints.market_clock_shift_s, timezone.utc)
        click.echo(f"  market clock:     simulated {market_now:%Y-%m-%d %H:%M} UTC, served on the wall clock")
    click.echo(f"  batch:            {endpoints.batch_running} children at once (sandbox.batch_running)")


@sandbox_group.command("down")
@common_options
@pass_app
def down_cmd(app: App) -> None:
    """Stop the sandbox; its instances go with it."""
    from remote.sandbox.lifecycle import down

    click.echo("sandbox stopped" if down(_state_dir(app)) else "sandbox was not running")


@sandbox_group.command("status")
@click.option("--json", "json_out", is_flag=True, help="Print as one JSON object.")
@common_options
@pass_app
def status_cmd(app: App, json_out: bool) -> None:
    """Say whether the sandbox runs, where, and which instances it hosts."""
    from remote.sandbox.lifecycle import status

    report = status(_state_dir(app))
    hosts = report.endpoints.ssh_endpoints() if report.endpoints else {}
    if json_out:
        ep = report.endpoints
        click.echo(
            json.dumps(
                {
                    "running": report.running,
                    "pid": report.pid,
                    "moto_url": ep.moto_url if ep else None,
                    "market_url": ep.market_url if ep else None,
                    "batch_running": ep.batch_running if ep else None,
                    "instances": {
                        iid: {"host": h.host, "port": h.port, "fingerprint": h.fingerprint, "root": str(h.root_dir)}
                        for iid, h in hosts.items()
                    },
                }
            )
        )
        return
    if not report.running or report.endpoints is None:
        click.echo("sandbox: not running (start it with `console sandbox up`)")
        return
    ep = report.endpoints
    click.echo(f"sandbox: running (pid {report.pid})")
    click.echo(f"  cloud (moto):     {ep.moto_url}  region {ep.region}, prices: {ep.price_source}")
    click.echo(f"  market simulator: {ep.market_url or 'not available'}")
    click.echo(f"  batch:            {ep.batch_running} children at once (sandbox.batch_running)")
    click.echo(f"  instances:        {len(hosts)}")
    for iid, h in sorted(hosts.items()):
        click.echo(f"    {iid}  ssh {h.user}@{h.host}:{h.port}  {h.fingerprint}  root {h.root_dir}")
    click.echo(f"  log: {report.log_file}")


def register(cli: click.Group) -> None:
    cli.add_command(sandbox_group)
