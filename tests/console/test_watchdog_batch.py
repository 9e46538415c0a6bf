"""The watchdog watches AWS Batch jobs too (on the sandbox's real Batch API and a real state
store): a job tagged as ours that no run knows is terminated as an orphan, and a known run's
job has its estimated cost recorded for the ledger and is left running."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from console.cost import batch_job_costs
from console.settings import load_settings
from console.state import StateStore
from console.watchdog.batch import watch_jobs
from console.watchdog.passes import PassReport
from remote.backends.base import BackendContext
from remote.backends.batch import BatchBackend
from remote.providers.aws_client import make_client
from remote.providers.batch_jobs import list_batch_jobs, terminate_batch_job
from tests.remote.sandbox_fixtures import sandbox  # noqa: F401

pytestmark = pytest.mark.slow


@dataclass
class _Resources:
    """The two calls the Batch pass makes of `console.resources.Resources`, at the sandbox."""

    target: Any
    queue: str

    def job_views(self) -> list[Any]:
        return list_batch_jobs(self.target, [self.queue])

    def terminate_job(self, job_id: str, reason: str) -> None:
        terminate_batch_job(self.target, job_id, reason)


@dataclass
class _Dog:
    resources: _Resources
    store: StateStore
    settings: Any = field(default_factory=lambda: load_settings().settings)


def _submit(client: Any, queue: str, run_id: str) -> str:
    return client.submit_job(
        jobName=f"job-{run_id}", jobQueue=queue, jobDefinition=queue, arrayProperties={"size": 2},
        containerOverrides={"command": ["python", "-c", "import time; time.sleep(60)"]},
        tags={"managed-by": "retrain-console", "run-id": run_id},
    )["jobId"]  # fmt: skip


def test_an_orphan_batch_job_is_terminated_and_a_known_runs_job_is_costed(
    sandbox: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    queue = f"w{time.monotonic_ns()}"
    target = sandbox.aws_target()
    BatchBackend(BackendContext(aws=lambda: target, options={"bucket": queue, "queue": queue,
                                                             "job_definition": queue}))._ensure_queue()  # fmt: skip
    client = make_client("batch", target)
    store = StateStore.open(tmp_path / "state")
    store.create_run("known-run", checklist="engine", checklist_path="engine", profile="sandbox", params={},
                     steps=[("engine-train", "engine-train", "train")])  # fmt: skip
    known = _submit(client, queue, "known-run")  # first: the sandbox runs two children at once
    orphan = _submit(client, queue, "ghost-run")
    time.sleep(1.5)  # both running
    dog = _Dog(_Resources(target, queue), store)
    report = PassReport(started_at=time.time())
    verdicts = watch_jobs(dog, report, time.time())
    assert [(v.instance_id, v.rule) for v in verdicts] == [(orphan, "orphan")]
    assert report.terminated == [orphan]
    deadline = time.monotonic() + 20
    while client.describe_jobs(jobs=[orphan])["jobs"][0]["status"] != "FAILED":
        assert time.monotonic() < deadline, "the orphan job kept running"
        time.sleep(0.2)
    assert client.describe_jobs(jobs=[known])["jobs"][0]["status"] == "RUNNING"
    costs = [e for e in store.events("known-run") if e.kind == "batch.cost"]
    assert costs and costs[-1].data["estimated_usd"] > 0
    assert batch_job_costs(store, "known-run") == {known: costs[-1].data["estimated_usd"]}
    client.terminate_job(jobId=known, reason="test over")
