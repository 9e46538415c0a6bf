"""Managed training jobs (SageMaker) in the state store, for the cost ledger.

SageMaker bills a job, not an instance of ours: ``BillableTimeInSeconds`` at the instance
type's rate. With managed spot it bills fewer seconds than the job trained
(``TrainingTimeInSeconds``); the saving is ``(1 - billable / training) x 100`` percent, and
the on-demand equivalent is the training seconds at the same rate. The train step records
each job when it is submitted and again when it ends (`record_job`); `job_costs` gives the
ledger's lines. Rates are the documented table of `remote.sandbox.prices` (SageMaker
on-demand list prices, us-east-1), labelled as sandbox figures on the sandbox.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from console.ledger_rows import execute, ledger_rows, rich_table
from console.state import StateStore
from remote.sandbox.prices import SANDBOX_PRICE_SOURCE, SANDBOX_SAGEMAKER_USD_PER_HOUR

LIST_PRICE_SOURCE = "SageMaker list price, us-east-1 (table)"


@dataclass(frozen=True)
class JobCost:
    """One training job's line in the ledger."""

    name: str
    run_id: str | None
    instance_type: str
    spot: bool
    status: str
    secondary: str
    created_at: float
    training_s: float
    billable_s: float
    usd_per_h: float | None
    source: str

    @property
    def cost_usd(self) -> float | None:
        return None if self.usd_per_h is None else self.billable_s * self.usd_per_h / 3600.0

    @property
    def on_demand_usd(self) -> float | None:
        return None if self.usd_per_h is None else self.training_s * self.usd_per_h / 3600.0

    @property
    def savings_usd(self) -> float | None:
        cost, on_demand = self.cost_usd, self.on_demand_usd
        return None if cost is None or on_demand is None else on_demand - cost

    @property
    def saved_pct(self) -> float | None:
        """SageMaker's managed-spot saving, ``(1 - billable / training) x 100``."""
        if not self.training_s:
            return None
        return round((1.0 - self.billable_s / self.training_s) * 100.0, 1)


def job_rate(instance_type: str, *, sandbox: bool) -> tuple[float | None, str]:
    """The $/h of a SageMaker instance type and where the figure comes from."""
    rate = SANDBOX_SAGEMAKER_USD_PER_HOUR.get(instance_type)
    return rate, (SANDBOX_PRICE_SOURCE if sandbox else LIST_PRICE_SOURCE) if rate is not None else "no price known"


def record_job(
    store: StateStore,
    *,
    name: str,
    run_id: str | None,
    backend: str,
    instance_type: str,
    spot: bool,
    status: str,
    secondary: str = "",
    training_s: float | None = None,
    billable_s: float | None = None,
    ended_at: float | None = None,
    sandbox: bool = True,
) -> None:
    """Insert the job, or update what it is now (its rate is fixed when first seen)."""
    rate, source = job_rate(instance_type, sandbox=sandbox)
    execute(
        store,
        "INSERT INTO training_jobs (name, run_id, backend, instance_type, spot, status, secondary, created_at,"
        " ended_at, training_s, billable_s, usd_per_h, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(name) DO UPDATE SET status = excluded.status, secondary = excluded.secondary,"
        " ended_at = COALESCE(excluded.ended_at, ended_at), training_s = COALESCE(excluded.training_s, training_s),"
        " billable_s = COALESCE(excluded.billable_s, billable_s)",
        (
            name,
            run_id,
            backend,
            instance_type,
            int(spot),
            status,
            secondary,
            time.time(),
            ended_at,
            training_s,
            billable_s,
            rate,
            source,
        ),  # fmt: skip
    )


def job_costs(store: StateStore, *, run_id: str | None = None, since: float | None = None) -> list[JobCost]:
    """The ledger's job lines, oldest first."""
    return [_cost_of(r) for r in ledger_rows(store, "training_jobs", run_id=run_id, since=since)]


OPEN_STATUSES = ("submitted", "pending", "starting", "running", "stopping")
"""Ledger states of a job that has not ended: its seconds may still grow."""


def open_jobs(store: StateStore, backend: str) -> list[str]:
    """Names of ``backend``'s jobs the ledger still has as not ended, oldest first."""
    marks = ", ".join("?" for _ in OPEN_STATUSES)
    rows = store._query(  # noqa: SLF001
        f"SELECT name FROM training_jobs WHERE backend = ? AND status IN ({marks}) ORDER BY created_at",
        (backend, *OPEN_STATUSES),
    )
    return [str(r["name"]) for r in rows]


def _cost_of(row: Any) -> JobCost:
    return JobCost(
        name=row["name"],
        run_id=row["run_id"],
        instance_type=row["instance_type"],
        spot=bool(row["spot"]),
        status=row["status"],
        secondary=row["secondary"],
        created_at=float(row["created_at"]),
        training_s=float(row["training_s"] or 0.0),
        billable_s=float(row["billable_s"] or 0.0),
        usd_per_h=row["usd_per_h"],
        source=row["source"],
    )


def record_ref(store: StateStore, ref: Any, status: Any | None, *, sandbox: bool) -> None:
    """`record_job` from a backend's `JobRef` and, once it has one, its `JobStatus`."""
    data = dict(ref.data)
    record_job(
        store,
        name=ref.name,
        run_id=ref.run_id,
        backend=ref.backend,
        instance_type=str(data.get("instance_type") or ""),
        spot=bool(data.get("spot")),
        status=status.phase.value if status is not None else "submitted",
        secondary=status.secondary if status is not None else "",
        training_s=status.training_s if status is not None else None,
        billable_s=status.billable_s if status is not None else None,
        ended_at=(status.ended_at or time.time()) if status is not None and status.phase.finished else None,
        sandbox=sandbox,
    )


def job_dict(job: JobCost) -> dict[str, Any]:
    """A ledger line as ``console cost --json`` prints it."""
    return {
        "job": job.name,
        "run_id": job.run_id,
        "instance_type": job.instance_type,
        "spot": job.spot,
        "status": job.status,
        "training_s": job.training_s,
        "billable_s": job.billable_s,
        "rate_usd_per_h": job.usd_per_h,
        "cost_usd": job.cost_usd,
        "on_demand_usd": job.on_demand_usd,
        "savings_usd": job.savings_usd,
        "saved_pct": job.saved_pct,
        "source": job.source,
    }


def jobs_table(jobs: list[JobCost]) -> Any:
    """The ledger's training-job lines as a Rich table (billable against training seconds, saved %)."""
    columns = ("run", "job", "type", "state", "training s", "billable s", "rate $/h", "cost $", "on-demand $",
               "saved %", "prices")  # fmt: skip
    table = rich_table(
        "training jobs (billed by the service)", columns, lambda col: col.endswith(("$", "$/h", " s", "%"))
    )
    for job in jobs:
        table.add_row(
            job.run_id or "(none)",
            job.name,
            job.instance_type + (" spot" if job.spot else ""),
            job.status,
            f"{job.training_s:.0f}",
            f"{job.billable_s:.0f}",
            _money(job.usd_per_h, 4),
            _money(job.cost_usd, 4),
            _money(job.on_demand_usd, 4),
            "-" if job.saved_pct is None else f"{job.saved_pct:.0f}",
            job.source,
        )
    return table


def _money(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
