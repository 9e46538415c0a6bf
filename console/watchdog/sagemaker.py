"""The watchdog's look at SageMaker training jobs: none outlives its purpose.

Each pass lists our live training jobs (`remote.backends.sagemaker.listing`), brings their
ledger lines up to date (`console.training_jobs`), and stops a job that is an ``orphan``
(tagged as ours, no run in the state store knows it), over ``budget`` (its billable seconds
at the instance type's rate reached the run's budget) or past ``max-runtime`` (its age
against its run's ``max_runtime_hours``; SageMaker enforces MaxRuntimeInSeconds itself, this
also covers the wait for spot capacity). A job submitted with ``--no-wait`` outlives the
console that submitted it on purpose: no heartbeat or run-ended rule applies to it.
Every stop is a ``watchdog.terminate`` event with the rule and reason.
"""

from __future__ import annotations

import logging
from typing import Any

from console import cost
from console.redact import redact
from console.training_jobs import job_rate, record_job
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
    return verdicts


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
