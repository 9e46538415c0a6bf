"""`console cost [--run RUN] [--days N]`: hours, rate, cost, on-demand equivalent and savings per instance."""

from __future__ import annotations

import json
import time

import click
from rich.table import Table

from console.app import App, common_options, pass_app
from console.batch_ledger import batch_costs, batch_dict, batch_table
from console.cost import InstanceCost, daily_spend, ledger, projected_cost, run_budget_usd, step_remaining_s
from console.errors import StateError
from console.render import output_console
from console.training_jobs import job_costs, job_dict, jobs_table


@click.command("cost")
@click.option("--run", "run_id", help="Only this run.")
@click.option(
    "--days", type=click.IntRange(1, 3650), default=7, show_default=True, help="Instances alive in the last N days."
)
@click.option("--json", "json_out", is_flag=True, help="Print as JSON.")
@common_options
@pass_app
def cost_cmd(app: App, run_id: str | None, days: int, json_out: bool) -> None:
    """What instances cost, per run and instance, with totals and budgets."""
    store = app.store
    if run_id and store.get_run(run_id) is None:
        raise StateError(f"no run {run_id!r}", hint="see `console runs`")
    now = time.time()
    lines = ledger(store, run_id=run_id, since=now - days * 86400, now=now)
    jobs = job_costs(store, run_id=run_id, since=now - days * 86400)
    batch = batch_costs(store, run_id=run_id, since=now - days * 86400)
    ended_because = {r.id: r.terminate_reason for r in store.instances(run_id=run_id) if r.terminated_at}
    if json_out:
        click.echo(
            json.dumps(
                {
                    "lines": [
                        {**_as_dict(line), "ended_because": ended_because.get(line.instance_id)} for line in lines
                    ],
                    "jobs": [job_dict(job) for job in jobs],
                    "batch_jobs": [batch_dict(job) for job in batch],
                    "total_usd": sum(line.cost_usd for line in lines)
                    + sum(j.cost_usd or 0.0 for j in jobs)
                    + sum(j.cost_usd for j in batch),
                    "today_usd": daily_spend(store, now=now),
                    "daily_budget_usd": app.settings.budget.daily_usd,
                }
            )
        )
        return
    if jobs:
        output_console().print(jobs_table(jobs))
    if batch:
        output_console().print(batch_table(batch))
    if not lines:
        click.echo("no instances" + (f" for run {run_id}" if run_id else f" in the last {days} days"))
        return
    table = Table(title=f"cost{' of run ' + run_id if run_id else f', last {days} days'}", title_justify="left")
    for col in ("run", "instance", "type", "state", "hours", "rate $/h", "cost $", "on-demand $", "saved $", "prices"):
        table.add_column(col, justify="right" if col.endswith(("$", "$/h", "hours")) else "left")
    by_run: dict[str | None, list[InstanceCost]] = {}
    for line in lines:
        by_run.setdefault(line.run_id, []).append(line)
    for rid, group in by_run.items():
        for line in group:
            table.add_row(
                rid or "(orphan)",
                line.instance_id,
                line.instance_type,
                "live" if line.live else "ended",
                f"{line.hours:.2f}",
                _money(line.rate_usd_per_h, 4),
                _money(line.cost_usd),
                _money(line.on_demand_usd),
                _money(line.savings_usd),
                line.source,
            )
        if rid:
            spent = sum(x.cost_usd for x in group)
            budget = run_budget_usd(store, rid, app.settings)
            remaining = step_remaining_s(store, rid, now=now)
            projected = sum(projected_cost(x, remaining) for x in group)
            table.add_row(
                "",
                f"run total (budget ${budget:.2f})",
                "",
                "",
                "",
                "",
                _money(spent),
                _money(_sum(x.on_demand_usd for x in group)),
                _money(_sum(x.savings_usd for x in group)),
                f"projected ${projected:.2f} at step end" if remaining else "",
            )
    table.add_row(
        "",
        "TOTAL",
        "",
        "",
        f"{sum(x.hours for x in lines):.2f}",
        "",
        _money(sum(x.cost_usd for x in lines)),
        _money(_sum(x.on_demand_usd for x in lines)),
        _money(_sum(x.savings_usd for x in lines)),
        "",
    )
    # Piped or captured output keeps every column whole rather than wrapping at 80.
    output_console().print(table)
    for line in lines:
        if not line.live:
            click.echo(f"{line.instance_id} ended: {ended_because.get(line.instance_id) or 'reason not recorded'}")
    click.echo(
        f"today (UTC): ${daily_spend(store, now=now):.2f} of the ${app.settings.budget.daily_usd:.2f} daily budget"
    )


def _sum(values) -> float | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def _money(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _as_dict(line: InstanceCost) -> dict:
    return {
        "run_id": line.run_id,
        "instance_id": line.instance_id,
        "instance_type": line.instance_type,
        "zone": line.zone,
        "live": line.live,
        "hours": line.hours,
        "rate_usd_per_h": line.rate_usd_per_h,
        "cost_usd": line.cost_usd,
        "spot_usd": line.spot_usd,
        "storage_usd": line.storage_usd,
        "on_demand_usd": line.on_demand_usd,
        "savings_usd": line.savings_usd,
        "source": line.source,
    }


def register(cli: click.Group) -> None:
    cli.add_command(cost_cmd)
