"""AWS Batch jobs in the state store, for the cost ledger (`console cost`).

Batch bills the instances its compute environments run, not jobs, so a job's figure here is
an *estimate*: its children's run seconds times the vCPUs each asked for, at a spot rate per
vCPU-hour (`remote.providers.batch_jobs.VCPU_HOUR_USD`, the sandbox's documented figure;
about an m5/c5 spot vCPU in us-east-1). Every figure derived from it says "estimated".

Who records (`record_view`): the engine when it submits its array job and when it ends
(`console.engine_batch`), and every watchdog pass for each job of ours it sees live, plus,
once, the final figures of a job it saw live before and that has since ended
(`console.watchdog.batch`). A job the watchdog meets with no run is recorded too (an orphan
costs money as well).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from console.ledger_rows import execute, ledger_rows, rich_table
from console.state import StateStore
from remote.providers.batch_jobs import VCPU_HOUR_USD, BatchJobView

ESTIMATE_SOURCE = f"estimate: child vCPU-seconds at ${VCPU_HOUR_USD}/vCPU-h (spot)"
SANDBOX_SOURCE = "sandbox " + ESTIMATE_SOURCE
ENDED = ("SUCCEEDED", "FAILED")


@dataclass(frozen=True)
class BatchCost:
    """One Batch job's line in the ledger."""

    job_id: str
    name: str
    run_id: str | None
    status: str
    vcpus: float
    children: int
    child_seconds: float
    usd_per_vcpu_h: float
    source: str
    seen_by: str
    created_at: float
    ended_at: float | None

    @property
    def vcpu_hours(self) -> float:
        return self.vcpus * self.child_seconds / 3600.0

    @property
    def cost_usd(self) -> float:
        return self.vcpu_hours * self.usd_per_vcpu_h


def record_view(
    store: StateStore, view: BatchJobView, *, seen_by: str, sandbox: bool, now: float | None = None
) -> None:
    """Insert the job, or update what it is now. Seconds never go down (a later, partial look at
    an array's children does not undo an earlier, fuller one); the rate is fixed when first seen."""
    now = time.time() if now is None else now
    ended = view.stopped_at or (now if view.status in ENDED else None)
    execute(
        store,
        "INSERT INTO batch_jobs (job_id, name, run_id, status, vcpus, children, child_seconds, usd_per_vcpu_h,"
        " source, seen_by, created_at, seen_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(job_id) DO UPDATE SET status = excluded.status, vcpus = excluded.vcpus,"
        " children = MAX(children, excluded.children),"
        " child_seconds = MAX(child_seconds, excluded.child_seconds), seen_at = excluded.seen_at,"
        " seen_by = CASE WHEN instr(seen_by, excluded.seen_by) > 0 THEN seen_by"
        " ELSE seen_by || ',' || excluded.seen_by END,"
        " ended_at = COALESCE(ended_at, excluded.ended_at)",
        (view.job_id, view.name, view.run_id, view.status, view.vcpus, view.children, view.child_seconds,
         VCPU_HOUR_USD, SANDBOX_SOURCE if sandbox else ESTIMATE_SOURCE, seen_by, view.created_at, now, ended),
    )  # fmt: skip


def open_job_ids(store: StateStore) -> list[str]:
    """Jobs recorded as live (no end yet): the watchdog looks each up once it stops listing it."""
    rows = store._query("SELECT job_id FROM batch_jobs WHERE ended_at IS NULL ORDER BY created_at")  # noqa: SLF001
    return [str(r["job_id"]) for r in rows]


def mark_gone(store: StateStore, job_id: str, now: float) -> None:
    """Batch no longer knows the job (it forgets ended jobs after a while): its last figures stand."""
    execute(
        store,
        "UPDATE batch_jobs SET status = status || ' (gone)', ended_at = ? WHERE job_id = ? AND ended_at IS NULL",
        (now, job_id),
    )


def batch_costs(store: StateStore, *, run_id: str | None = None, since: float | None = None) -> list[BatchCost]:
    """The ledger's Batch lines, oldest first."""
    rows = ledger_rows(store, "batch_jobs", run_id=run_id, since=since)
    return [
        BatchCost(
            job_id=r["job_id"],
            name=r["name"],
            run_id=r["run_id"],
            status=r["status"],
            vcpus=float(r["vcpus"]),
            children=int(r["children"]),
            child_seconds=float(r["child_seconds"]),
            usd_per_vcpu_h=float(r["usd_per_vcpu_h"]),
            source=r["source"],
            seen_by=r["seen_by"],
            created_at=float(r["created_at"]),
            ended_at=r["ended_at"],
        )  # fmt: skip
        for r in rows
    ]


def batch_dict(job: BatchCost) -> dict[str, Any]:
    """A ledger line as ``console cost --json`` prints it."""
    return {
        "job_id": job.job_id,
        "job": job.name,
        "run_id": job.run_id,
        "status": job.status,
        "children": job.children,
        "vcpus_per_child": job.vcpus,
        "child_seconds": job.child_seconds,
        "vcpu_hours": job.vcpu_hours,
        "rate_usd_per_vcpu_h": job.usd_per_vcpu_h,
        "estimated_usd": job.cost_usd,
        "seen_by": job.seen_by,
        "source": job.source,
    }


def batch_table(jobs: list[BatchCost]) -> Any:
    """The ledger's Batch lines as a Rich table."""
    columns = (
        "run",
        "job",
        "job id",
        "state",
        "children",
        "vCPU",
        "child s",
        "vCPU-h",
        "$/vCPU-h",
        "est. $",
        "seen by",
    )
    numeric = ("children", "vCPU", "child s", "vCPU-h", "$/vCPU-h", "est. $")
    table = rich_table(
        "AWS Batch jobs (estimated: Batch bills its instances, not jobs)", columns, lambda col: col in numeric
    )
    for job in jobs:
        table.add_row(
            job.run_id or "(orphan)", job.name, job.job_id, job.status, str(job.children), f"{job.vcpus:g}",
            f"{job.child_seconds:.0f}", f"{job.vcpu_hours:.4f}", f"{job.usd_per_vcpu_h:.4f}", f"{job.cost_usd:.4f}",
            job.seen_by,
        )  # fmt: skip
    if len(jobs) > 1:
        total = sum(j.cost_usd for j in jobs)
        table.add_row("", "TOTAL", "", "", "", "", "", f"{sum(j.vcpu_hours for j in jobs):.4f}", "", f"{total:.4f}")
    table.caption = "prices: " + "; ".join(sorted({j.source for j in jobs}))
    table.caption_justify = "left"
    return table
