"""The watchdog's look at SageMaker training jobs: none outlives its purpose.

Each pass lists our live training jobs (`remote.backends.sagemaker.listing`), brings their
ledger lines up to date (`console.training_jobs`), and stops a job that is an ``orphan``
(tagged as ours, no run in the state store knows it), over ``budget`` (its billable seconds
at the instance type's rate reached the run's budget) or past ``max-runtime`` (its age
against its run's ``max_runtime_hours``; SageMaker enforces MaxRuntimeInSeconds itself, this
also covers the wait for spot capacity). A job submitted with ``--no-wait`` outlives the
console that submitted it on purpose: no heartbeat or run-ended rule applies to it.
Every stop is a ``watchdog.terminate`` event with the rule and reason.

The list holds InProgress jobs only, so a ``--no-wait`` job that ends between two passes
would keep the seconds of the last pass that saw it running. The finished-job sweep closes
that gap: each job the ledger still has as not ended and the list no longer shows is
described once more, and its final state, training and billable seconds and end time are
recorded (once: an ended job leaves the sweep).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from console import cost
from console.redact import redact
from console.training_jobs import job_rate, open_jobs, record_job
from console.watchdog.rules import Verdict, max_runtime_minutes

log = logging.getLogger("console.watchdog")


def watch_training_jobs(dog: Any, report: Any, now: float, target: Any = None) -> list[Verdict]:
    """Judge every live training job of ours once; stop the ones that must go. ``dog`` is the
    `console.watchdog.passes.Watchdog` (typed loosely: passes imports this module)."""
    from remote.backends.sagemaker.listing import live_training_jobs, stop_training_job

    try:
        if target is None:
            r = dog.resources
            target = r.sandbox(start=False).aws_target() if r.sandboxed else r.aws_target()
        jobs = live_training_jobs(target)
    except Exception as exc:  # noqa: BLE001 - SageMaker unreachable (or the sandbox down): next pass
        log.info("%s", redact(f"cannot list SageMaker training jobs: {exc}"))
        return []
    settings = dog.settings
    verdicts = []
    for job in jobs:
        run = dog.store.get_run(job.run_id) if job.run_id else None
        record_job(dog.store, name=job.name, run_id=job.run_id if run else None, backend="sagemaker",
                   instance_type=job.instance_type, spot=job.spot, status="running", secondary=job.secondary,
                   training_s=job.training_s, billable_s=job.billable_s, sandbox=settings.is_sandbox)  # fmt: skip
        verdict = _judge(dog, job, run, now)
        if verdict is None:
            continue
        verdicts.append(verdict)
        try:
            stop_training_job(target, job.name)
        except Exception as exc:  # noqa: BLE001 - tried again on the next pass
            report.failed.append(job.name)
            log.warning("%s", redact(f"cannot stop training job {job.name}: {exc}"))
            continue
        report.terminated.append(job.name)
        dog.store.add_event(
            run.id if run is not None else None,
            None,
            "watchdog.terminate",
            f"stopped SageMaker job {job.name} ({verdict.rule}): {verdict.reason}",
            {"job": job.name, "rule": verdict.rule, "kind": "training-job"},
        )
    sweep_finished_jobs(dog, target, {job.name for job in jobs})
    return verdicts


FINAL_PHASES = {"Completed": "succeeded", "Failed": "failed", "Stopped": "stopped"}
"""SageMaker's end states, as the ledger (and `remote.backends.base.JobPhase`) names them."""


def sweep_finished_jobs(dog: Any, target: Any, live: set[str]) -> list[str]:
    """Record the final seconds of each job the ledger has as not ended that is no longer
    live; the names recorded as ended."""
    from remote.backends.sagemaker.listing import describe_training_job

    ended = []
    for name in open_jobs(dog.store, "sagemaker"):
        if name in live:
            continue
        try:
            job = describe_training_job(target, name)
        except Exception as exc:  # noqa: BLE001 - SageMaker unreachable: the next pass tries again
            log.info("%s", redact(f"cannot describe training job {name}: {exc}"))
            continue
        if job is None:  # SageMaker no longer knows it: nothing more will be billed
            record_job(dog.store, name=name, run_id=None, backend="sagemaker", instance_type="", spot=False,
                       status="unknown", secondary="not found in SageMaker", ended_at=time.time(),
                       sandbox=dog.settings.is_sandbox)  # fmt: skip
            continue
        status = FINAL_PHASES.get(job.status)
        record_job(dog.store, name=name, run_id=job.run_id, backend="sagemaker", instance_type=job.instance_type,
                   spot=job.spot, status=status or "running", secondary=job.secondary, training_s=job.training_s,
                   billable_s=job.billable_s, ended_at=(job.ended_at or time.time()) if status else None,
                   sandbox=dog.settings.is_sandbox)  # fmt: skip
        if status:
            ended.append(name)
    return ended


def _judge(dog: Any, job: Any, run: Any, now: float) -> Verdict | None:
    if run is None:
        tag = f" (tagged run-id {job.run_id}, unknown here)" if job.run_id else ""
        return Verdict(job.name, None, "orphan", f"orphan: tagged as ours but no run in the state store knows it{tag}")
    rate, _ = job_rate(job.instance_type, sandbox=dog.settings.is_sandbox)
    spent = job.billable_s * (rate or 0.0) / 3600.0
    budget = cost.run_budget_usd(dog.store, run.id, dog.settings)
    if rate is not None and spent >= budget:
        return Verdict(job.name, run.id, "budget", f"billed ${spent:.2f} reached the run budget of ${budget:.2f}")
    limit = max_runtime_minutes(None, run, dog.settings.max_runtime_hours)
    age = now - job.created_at
    if age > limit * 60:
        return Verdict(job.name, run.id, "max-runtime", f"up {age / 60:.1f} min, past its max runtime of {limit:g} min")
    return None
