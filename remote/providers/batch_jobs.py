"""AWS Batch jobs the console submitted, as the watchdog and the cost ledger see them.

Batch bills the instances its compute environments run, not jobs; a job's cost here is an
*estimate*: its vCPUs times the seconds each child ran, at `VCPU_HOUR_USD` (spot, the
sandbox's documented figure; on AWS about an m5's spot price per vCPU). Every figure
derived from it says "estimated".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from remote.providers.aws_client import AwsTarget, call, make_client

VCPU_HOUR_USD = 0.0125
"""Estimated spot price of one vCPU-hour (sandbox figure; m5/c5 spot in us-east-1 is about this)."""
LIVE = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


@dataclass(frozen=True)
class BatchJobView:
    """One array (or single) job tagged as ours."""

    job_id: str
    name: str
    status: str
    run_id: str | None
    owner: str | None
    created_at: float
    started_at: float | None
    vcpus: float
    """Per child."""
    child_seconds: float
    """Seconds its children have run so far, summed."""
    children_running: int
    children: int = 1
    stopped_at: float | None = None
    """When it ended (None while it is live)."""

    @property
    def estimated_usd(self) -> float:
        return self.vcpus * self.child_seconds / 3600.0 * VCPU_HOUR_USD


def _vcpus(job: dict[str, Any]) -> float:
    for req in (job.get("container") or {}).get("resourceRequirements") or ():
        if req.get("type") == "VCPU":
            return float(req.get("value") or 1)
    return float((job.get("container") or {}).get("vcpus") or 1)


def list_batch_jobs(target: AwsTarget, queues: Sequence[str], *, now: float | None = None) -> list[BatchJobView]:
    """Live jobs tagged ``managed-by: retrain-console`` in ``queues``."""
    client = make_client("batch", target)
    now = time.time() if now is None else now
    known = call(target, "describe_job_queues", client.describe_job_queues, jobQueues=list(queues))["jobQueues"]
    ids: list[str] = []
    for queue in [q["jobQueueName"] for q in known]:
        for status in LIVE:
            rows = call(target, "list_jobs", client.list_jobs, jobQueue=queue, jobStatus=status)["jobSummaryList"]
            ids += [r["jobId"] for r in rows]
    views = []
    for start in range(0, len(ids), 100):
        for job in call(target, "describe_jobs", client.describe_jobs, jobs=ids[start : start + 100])["jobs"]:
            view = _view(target, client, job, now)
            if view is not None:
                views.append(view)
    return views


def describe_batch_job(target: AwsTarget, job_id: str, *, now: float | None = None) -> BatchJobView | None:
    """One job of ours by id, live or ended (None: Batch no longer knows it, or it is not ours)."""
    client = make_client("batch", target)
    jobs = call(target, "describe_jobs", client.describe_jobs, jobs=[job_id])["jobs"]
    return _view(target, client, jobs[0], time.time() if now is None else now) if jobs else None


def _view(target: AwsTarget, client: Any, job: dict[str, Any], now: float) -> BatchJobView | None:
    tags = job.get("tags") or {}
    if tags.get("managed-by") != "retrain-console":
        return None
    children = _children(target, client, job) if job.get("arrayProperties") else [job]
    return BatchJobView(
        job_id=job["jobId"],
        name=job.get("jobName", ""),
        status=job.get("status", ""),
        run_id=tags.get("run-id"),
        owner=tags.get("owner"),
        created_at=float(job.get("createdAt", now * 1000)) / 1000,
        started_at=float(job["startedAt"]) / 1000 if job.get("startedAt") else None,
        vcpus=_vcpus(job),
        child_seconds=sum(_ran(c, now) for c in children),
        children_running=sum(1 for c in children if c.get("status") == "RUNNING"),
        children=len(children),
        stopped_at=float(job["stoppedAt"]) / 1000 if job.get("stoppedAt") else None,
    )


def _children(target: AwsTarget, client: Any, job: dict[str, Any]) -> list[dict[str, Any]]:
    rows = call(target, "list_jobs", client.list_jobs, arrayJobId=job["jobId"])["jobSummaryList"]
    return [dict(r) for r in rows]


def _ran(job: dict[str, Any], now: float) -> float:
    started = job.get("startedAt")
    if not started:
        return 0.0
    stopped = job.get("stoppedAt") or now * 1000
    return max(0.0, (float(stopped) - float(started)) / 1000)


def terminate_batch_job(target: AwsTarget, job_id: str, reason: str) -> None:
    client = make_client("batch", target)
    call(target, "terminate_job", client.terminate_job, jobId=job_id, reason=reason[:200])
