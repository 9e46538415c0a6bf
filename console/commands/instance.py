"""`console instance prices | launch | list | terminate | ssh`: GPU instances by hand, through the same provider."""

from __future__ import annotations

import json
import re
import time

import click
from rich.table import Table

from console.app import App, common_options, pass_app
from console.errors import UsageError
from console.numbers import FiniteFloatRange
from console.render import output_console
from console.state import RunStatus

_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@click.group("instance")
def instance_group() -> None:
    """Prices, launch, list and terminate GPU instances (the sandbox's on the sandbox profile)."""


@instance_group.command("prices")
@click.option("--type", "types", multiple=True, help="Instance type (repeatable); default: the configured two.")
@click.option("--json", "json_out", is_flag=True, help="Print as JSON.")
@common_options
@pass_app
def prices_cmd(app: App, types: tuple[str, ...], json_out: bool) -> None:
    """Spot price per zone with on-demand for comparison, cheapest first."""
    wanted = list(types) or [app.settings.cloud.instance_type, app.settings.cloud.alt_instance_type]
    _check_types(wanted)
    prices = app.resources.provider().prices(wanted)
    if json_out:
        click.echo(
            json.dumps(
                [
                    {
                        "instance_type": p.instance_type,
                        "zone": p.zone,
                        "spot_usd_per_hour": p.spot_usd_per_hour,
                        "on_demand_usd_per_hour": p.on_demand_usd_per_hour,
                        "source": p.source,
                    }
                    for p in prices
                ]
            )
        )
        return
    table = Table(title=f"spot prices ({prices[0].source if prices else 'none'})", title_justify="left")
    for col in ("type", "zone", "spot $/h", "on-demand $/h", "saving", "source"):
        table.add_column(col, justify="right" if "$" in col or col == "saving" else "left")
    for p in prices:
        table.add_row(
            p.instance_type,
            p.zone,
            _money(p.spot_usd_per_hour, 4),
            _money(p.on_demand_usd_per_hour, 3),
            f"{p.saving:.0%}" if p.saving is not None else "-",
            p.source,
        )
    output_console().print(table)


@instance_group.command("launch")
@click.option("--run-id", help="Tag it with this run (default: a new manual-... id). Reuses the run's live instance.")
@click.option("--type", "instance_type", help="Instance type (default: cloud.instance_type).")
@click.option("--alt-type", help="Alternative type when the first has no capacity (default: cloud.alt_instance_type).")
@click.option(
    "--budget", "budget_usd", type=FiniteFloatRange(min=0.01, max=1_000_000), default=None, help="Budget in US dollars."
)
@click.option("--max-hours", type=FiniteFloatRange(min=0.01, max=72), default=None, help="Maximum runtime (hours).")
@click.option("--json", "json_out", is_flag=True, help="Print as JSON.")
@common_options
@pass_app
def launch_cmd(
    app: App,
    run_id: str | None,
    instance_type: str | None,
    alt_type: str | None,
    budget_usd: float | None,
    max_hours: float | None,
    json_out: bool,
) -> None:
    """Launch a spot instance by hand (with the dead-man switch, tags and the operator-only SSH rule)."""
    s = app.settings
    run_id = run_id or time.strftime("manual-%Y%m%d-%H%M%S", time.gmtime())
    budget, hours = budget_usd or s.budget.run_usd, max_hours or s.max_runtime_hours
    if app.store.get_run(run_id) is None:
        # A run the watchdog knows (budget, runtime), so it is not taken for an orphan.
        app.store.create_run(
            run_id,
            checklist="manual",
            checklist_path="(console instance launch)",
            profile=s.profile,
            params={"budget_usd": budget, "max_runtime_hours": hours},
            steps=[],
        )
        app.store.set_run_status(run_id, RunStatus.MANUAL, summary="instances launched by hand")
    launched = app.instances.launch_for_run(
        run_id,
        instance_type=instance_type or s.cloud.instance_type,
        alt_type=alt_type or s.cloud.alt_instance_type,
        budget_usd=budget,
        max_runtime_hours=hours,
        extra={"manual": True},
    )
    watchdog = _start_watchdog(app)
    o = launched.outputs
    if json_out:
        click.echo(
            json.dumps(
                {
                    "reused": launched.reused,
                    "reason": launched.reason,
                    "tried": [str(a) for a in launched.attempts],
                    "run_id": run_id,
                    "watchdog": watchdog,
                    **o.model_dump(),
                },
                default=str,
            )
        )
        return
    click.echo(f"{'reused' if launched.reused else 'launched'} {o.instance_id} for run {run_id}: {launched.reason}")
    click.echo(f"  ssh {o.user}@{o.host} -p {o.port} -i {o.key_path}")
    click.echo(
        "  the dead-man switch terminates it without heartbeats; "
        f"end it with `console instance terminate {o.instance_id}`"
    )
    click.echo(f"  {watchdog}")


def _start_watchdog(app: App) -> str:
    """What the launch says about the watchdog: started (or already running), or why not."""
    if not app.settings.watchdog.autostart:
        return "watchdog.autostart is off: start it with `console watchdog start`"
    from console.watchdog import ensure_watchdog_running

    try:
        pid = ensure_watchdog_running(app.settings, config_path=app.loaded.config_path)
    except Exception as exc:  # noqa: BLE001 - the instance's own dead-man switch still guards it
        return f"could not start the watchdog ({exc}); start it with `console watchdog start`"
    return f"watchdog running (pid {pid}): it holds this instance to its budget and runtime"


@instance_group.command("list")
@click.option("--json", "json_out", is_flag=True, help="Print as JSON.")
@common_options
@pass_app
def list_cmd(app: App, json_out: bool) -> None:
    """Every instance tagged as the console's that is not terminated."""
    instances = app.resources.provider().list_managed()
    if json_out:
        click.echo(
            json.dumps(
                [
                    {
                        "id": i.id,
                        "state": i.state,
                        "instance_type": i.instance_type,
                        "zone": i.zone,
                        "run_id": i.run_id,
                        "public_address": i.public_address,
                        "launched_at": i.launched_at,
                        "spot_usd_per_hour": i.spot_usd_per_hour,
                        "state_reason": i.state_reason,
                    }
                    for i in instances
                ],
                default=str,
            )
        )
        return
    if not instances:
        click.echo("no instances")
        return
    table = Table(title="instances", title_justify="left")
    for col in ("id", "state", "type", "zone", "run", "address", "up", "spot $/h"):
        table.add_column(col)
    now = time.time()
    for i in instances:
        up = f"{(now - i.launched_at.timestamp()) / 60:.0f} min" if i.launched_at else "-"
        table.add_row(
            i.id,
            i.state,
            i.instance_type,
            i.zone,
            i.run_id or "(untagged)",
            i.public_address or "-",
            up,
            _money(i.spot_usd_per_hour, 4),
        )
    output_console().print(table)


@instance_group.command("terminate")
@click.argument("instance_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every instance the console manages.")
@common_options
@pass_app
def terminate_cmd(app: App, instance_ids: tuple[str, ...], all_: bool) -> None:
    """Terminate instances and wait until the provider confirms each one."""
    from console.errors import StepFailed

    if not instance_ids and not all_:
        raise UsageError("name an instance id, or pass --all", hint="see `console instance list`")
    for iid in instance_ids:
        if not _INSTANCE_ID.match(iid):
            raise UsageError(f"{iid!r} is not an instance id like i-0123456789abcdef0")
    instances = app.instances
    ids = list(instance_ids) or [i.id for i in instances.provider.list_managed()]
    if not ids:
        click.echo("no instances to terminate")
        return
    known = {r.id for r in app.store.instances()}
    for iid in ids:
        ended = instances.terminate(iid, reason="console instance terminate")
        if ended.already_gone and iid not in known:
            raise UsageError(f"no instance {iid!r}: the provider does not know it", hint="see `console instance list`")
        if not ended.confirmed:
            raise StepFailed(f"{iid} is still {ended.state} after terminate", hint="run the command again")
        click.echo(ended.line())


def _check_types(types: list[str]) -> None:
    from remote.providers.base import check_instance_type

    for t in types:
        try:
            check_instance_type(t)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def _money(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@instance_group.command("ssh", context_settings={"ignore_unknown_options": True})
@click.argument("instance_id")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@common_options
@pass_app
def ssh_cmd(app: App, instance_id: str, command: tuple[str, ...]) -> None:
    """Open a shell on INSTANCE (or run COMMAND after --) with its pinned host key.

    The system ssh gets the instance's own key and known-hosts file: never your
    ~/.ssh, never a blindly accepted host key.
    """
    import os
    import shlex

    if not _INSTANCE_ID.match(instance_id):
        raise UsageError(f"{instance_id!r} is not an instance id", hint="see `console instance list`")
    runner = app.instances.runner(instance_id)
    with runner:
        argv = runner.openssh_argv()
    if command:
        if os.isatty(0):
            argv.insert(-1, "-t")  # options go before the host; a terminal for interactive commands
        argv += ["--", " ".join(shlex.quote(c) for c in command)]
    os.execvp(argv[0], argv)


def register(cli: click.Group) -> None:
    cli.add_command(instance_group)
