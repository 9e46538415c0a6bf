"""The watchdog's look at AWS Batch jobs: no job outlives its purpose either.

Each pass lists the live jobs tagged as ours in the console's queues (`Resources.job_views`)
and judges each by the instance rules (`console.watchdog.rules`): ``orphan`` (no run in the
state store knows it), ``run-ended``, ``max-runtime`` (the job's age against its run's
``max_runtime_hours``), ``heartbeat``, and ``budget`` (its estimated cost, vCPU-seconds at
`remote.providers.batch_jobs.VCPU_HOUR_USD`, against ``budget.run_usd``). A job that breaks
one is terminated (Batch ends every child) with the reason, recorded as a
``watchdog.terminate`` event. Every job of ours it sees is recorded in the cost ledger's
Batch table (`console.batch_ledger`), with a ``batch.cost`` event for a known run's job; a
job recorded as live that the pass no longer lists is looked up once more for its final
figures (at most `FINAL_LOOKUPS` a pass).
"""

from __future__ import annotations

import logging
from typing import Any

from console.batch_ledger import mark_gone, open_job_ids, record_view
from console.redact import redact
from console.watchdog.rules import Facts, Verdict, first_rule, max_runtime_minutes

log = logging.getLogger("console.watchdog")
FINAL_LOOKUPS = 20


def watch_jobs(dog: Any, report: Any, now: float) -> list[Verdict]:
    """Judge every live Batch job of ours once; terminate the ones that must go. ``dog`` is the
    `console.watchdog.passes.Watchdog` (its resources, store, settings), ``report`` its pass report
    (typed loosely: passes imports this module, so this one cannot import it back)."""
    try:
        jobs = dog.resources.job_views()
    except Exception as exc:  # noqa: BLE001 - Batch unreachable: say so, try again next pass
        log.warning("%s", redact(f"cannot list Batch jobs: {exc}"))
        return []
    settings = dog.settings
    owner = settings.cloud.owner
    verdicts = []
    for job in jobs:
        if job.owner not in (None, owner):
            continue
        run = dog.store.get_run(job.run_id) if job.run_id else None
        record_view(dog.store, job, seen_by="watchdog", sandbox=settings.is_sandbox, now=now)
        if run is not None:
            dog.store.add_event(
                run.id,
                None,
                "batch.cost",
                f"{job.name}: estimated ${job.estimated_usd:.4f} so far",
                {"job_id": job.job_id, "estimated_usd": job.estimated_usd, "child_seconds": job.child_seconds},
            )
        over = job.estimated_usd >= settings.budget.run_usd
        facts = Facts(
            job.job_id,
            run,
            job.run_id,
            job.started_at or job.created_at,
            max_runtime_minutes(None, run, settings.max_runtime_hours) if run is not None else float("inf"),
            budget_reason=f"estimated ${job.estimated_usd:.2f} reached the run budget" if over else None,
        )
        verdict = first_rule(facts, now, settings.watchdog)
        if verdict is None:
            continue
        verdicts.append(verdict)
        try:
            dog.resources.terminate_job(job.job_id, f"watchdog: {verdict.rule}: {verdict.reason}")
        except Exception as exc:  # noqa: BLE001 - retried on the next pass
            report.failed.append(job.job_id)
            log.warning("%s", redact(f"cannot terminate Batch job {job.job_id}: {exc}"))
            continue
        report.terminated.append(job.job_id)
        dog.store.add_event(
            job.run_id if run is not None else None,
            None,
            "watchdog.terminate",
            f"terminated Batch job {job.name} ({verdict.rule}): {verdict.reason}",
            {"job_id": job.job_id, "rule": verdict.rule, "kind": "batch-job"},
        )
    _record_ended(dog, {job.job_id for job in jobs}, now)
    return verdicts


def _record_ended(dog: Any, live: set[str], now: float) -> None:
    """Final figures of the jobs the ledger holds as live that this pass no longer listed."""
    for job_id in [j for j in open_job_ids(dog.store) if j not in live][:FINAL_LOOKUPS]:
        try:
            view = dog.resources.job_view(job_id)
        except Exception as exc:  # noqa: BLE001 - tried again next pass
            log.warning("%s", redact(f"cannot look up Batch job {job_id}: {exc}"))
            continue
        if view is None:
            mark_gone(dog.store, job_id, now)
        else:
            record_view(dog.store, view, seen_by="watchdog", sandbox=dog.settings.is_sandbox, now=now)
