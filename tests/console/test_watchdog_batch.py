"""The watchdog watches AWS Batch jobs too (on the sandbox's real Batch API and a real state
store): a job tagged as ours that no run knows is terminated as an orphan, and a known run's
job has its estimated cost recorded for the ledger and is left running; the next pass records
the orphan's final figures, and `console cost` shows both jobs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from console.batch_ledger import batch_costs
from console.cost import batch_job_costs
from console.settings import load_settings
from console.state import StateStore
from console.watchdog.batch import watch_jobs
from console.watchdog.passes import PassReport
from remote.backends.base import BackendContext
from remote.backends.batch import BatchBackend
from remote.providers.aws_client import make_client
from remote.providers.batch_jobs import describe_batch_job, list_batch_jobs, terminate_batch_job
from tests.console.cli import console
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

    def job_view(self, job_id: str) -> Any:
        return describe_batch_job(self.target, job_id)


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
    # The next pass no longer lists the ended orphan: it looks it up once for its final figures.
    watch_jobs(dog, PassReport(started_at=time.time()), time.time())
    lines = {job.job_id: job for job in batch_costs(store)}
    assert lines[orphan].run_id == "ghost-run" and lines[orphan].status == "FAILED" and lines[orphan].ended_at
    assert lines[orphan].children == 2 and lines[orphan].cost_usd == 0.0  # queued behind the known job: never ran
    assert lines[known].status == "RUNNING" and lines[known].ended_at is None
    client.terminate_job(jobId=known, reason="test over")
    while client.describe_jobs(jobs=[known])["jobs"][0]["status"] != "FAILED":
        assert time.monotonic() < deadline + 20, "the known job kept running"
        time.sleep(0.2)
    watch_jobs(dog, PassReport(started_at=time.time()), time.time())
    final = {job.job_id: job for job in batch_costs(store)}[known]
    assert final.status == "FAILED" and final.ended_at and final.child_seconds >= lines[known].child_seconds > 0
    shown = console("cost", "--json", "--state-dir", str(tmp_path / "state"))
    assert shown.returncode == 0, shown.stderr
    ledger = {j["job_id"]: j for j in json.loads(shown.stdout)["batch_jobs"]}
    assert set(ledger) == {known, orphan} and ledger[orphan]["seen_by"] == "watchdog"
    assert ledger[known]["estimated_usd"] == pytest.approx(final.cost_usd) and final.cost_usd > 0
    table = console("cost", "--state-dir", str(tmp_path / "state")).stdout
    assert "AWS Batch jobs (estimated" in table and orphan in table and "(orphan)" not in table
