"""The watchdog watches SageMaker training jobs (on the sandbox, whose jobs really run, and a
real state store): a job tagged as ours that no run knows is stopped as an orphan, a known
run's job is left running with its ledger line brought up to date, and once it ends between
passes the finished-job sweep records its final seconds."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from console.settings import load_settings
from console.state import StateStore
from console.training_jobs import job_costs, open_jobs
from console.watchdog.passes import PassReport
from console.watchdog.sagemaker import watch_training_jobs
from remote.backends import backend_class
from remote.backends.base import BackendContext, JobPhase, JobSpec
from remote.providers.aws_client import make_client
from tests.remote.sandbox_fixtures import sandbox  # noqa: F401

pytestmark = pytest.mark.slow
UNIT = "BTC-USD"


@dataclass
class _Dog:
    store: StateStore
    settings: Any = field(default_factory=lambda: load_settings().settings)


def test_an_orphan_training_job_is_stopped_and_a_known_runs_job_is_left_and_costed(
    sandbox: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    from training.features.spec import SPEC_VERSION, spec_for
    from training.families.lstm.synthetic import write_synthetic_feature_file

    target = sandbox.aws_target()
    stamp = time.monotonic_ns()
    bucket = f"rc-wd-{stamp}"
    make_client("s3", target).create_bucket(Bucket=bucket)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "sagemaker.amazonaws.com"}}]}  # fmt: skip
    role = make_client("iam", target).create_role(RoleName=f"rc-wd-{stamp}", AssumeRolePolicyDocument=json.dumps(trust))
    write_synthetic_feature_file(tmp_path / "f", UNIT, 9000, 3, stored_hash=spec_for(UNIT).hash, spec_version=SPEC_VERSION)
    store = StateStore.open(tmp_path / "state")
    store.create_run("known-run", checklist="retrain", checklist_path="retrain", profile="sandbox",
                     params={"budget_usd": 10.0}, steps=[("train", "train", "train")])  # fmt: skip
    refs = {}
    for run_id in ("known-run", f"ghost-{stamp}"):
        backend = backend_class("sagemaker")(BackendContext(
            run_id=run_id, aws=lambda: target, work_dir=tmp_path / "work",
            options={"role_arn": role["Role"]["Arn"], "bucket": bucket, "features_dir": str(tmp_path / "f")}))  # fmt: skip
        spec = JobSpec(run_id=run_id, name=f"train-wd-{stamp}-{run_id[:5]}", family="lstm", units=(UNIT,),
                       params={"train": {"epochs": 500, "window": 8, "longest_feature_window": 10,
                                         "hidden_size": 8, "num_layers": 1, "device": "cpu"}})  # fmt: skip
        refs[run_id] = (backend, backend.submit(spec))
    try:
        report = PassReport(started_at=time.time())
        verdicts = watch_training_jobs(_Dog(store), report, time.time(), target=target)
        orphan_backend, orphan = refs[f"ghost-{stamp}"]
        assert [(v.instance_id, v.rule) for v in verdicts] == [(orphan.name, "orphan")]
        assert report.terminated == [orphan.name]
        deadline = time.monotonic() + 30
        while (status := orphan_backend.status(orphan)).phase is not JobPhase.STOPPED:
            assert time.monotonic() < deadline, f"the orphan kept running: {status}"
            time.sleep(0.2)
        known_backend, known = refs["known-run"]
        assert not known_backend.status(known).phase.finished
        [line] = job_costs(store, run_id="known-run")
        assert (line.name, line.status, line.instance_type, line.spot) == (known.name, "running", "ml.g4dn.xlarge", True)
        stopped = [e for e in store.events() if e.kind == "watchdog.terminate"]
        assert [e.data["job"] for e in stopped] == [orphan.name] and "orphan" in stopped[0].message

        # Both jobs end between passes (as a --no-wait job does): the next pass no longer lists
        # them, and the finished-job sweep records their final seconds, once.
        known_backend.cancel(known)
        deadline = time.monotonic() + 30
        while not (final := known_backend.status(known)).phase.finished:
            assert time.monotonic() < deadline, f"the job kept running: {final}"
            time.sleep(0.2)
        described = make_client("sagemaker", target).describe_training_job(TrainingJobName=known.name)
        assert sorted(open_jobs(store, "sagemaker")) == sorted([known.name, orphan.name])
        watch_training_jobs(_Dog(store), PassReport(started_at=time.time()), time.time(), target=target)
        [line] = job_costs(store, run_id="known-run")
        assert (line.status, line.training_s, line.billable_s) == (
            "stopped", described["TrainingTimeInSeconds"], described["BillableTimeInSeconds"])  # fmt: skip
        assert line.training_s > 0 and open_jobs(store, "sagemaker") == []
    finally:
        for backend, ref in refs.values():
            backend.cancel(ref)
