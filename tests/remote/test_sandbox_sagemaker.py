"""The sandbox runs SageMaker training jobs for real, where moto only records them: boto3
over HTTP validates like AWS (unique names, a role that trusts SageMaker, MaxWait at least
MaxRuntime), a spot interruption resumes from the checkpoint prefix and loses at most the
epoch under way, and MaxRuntime stops a job as a failure with its reason."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from remote.backends import backend_class
from remote.backends.base import BackendContext, JobEvent, JobPhase, JobSpec
from remote.providers.aws_client import make_client
from remote.storage import LocalArtifactStore
from tests.remote.sandbox_fixtures import new_run_id, sandbox  # noqa: F401

UNIT = "BTC-USD"
TRAIN = {"window": 8, "longest_feature_window": 10, "hidden_size": 8, "num_layers": 1, "batch_size": 64,
         "device": "cpu", "patience": 1000, "sample_stride": 5}  # fmt: skip
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                 "Principal": {"Service": "sagemaker.amazonaws.com"}}]}  # fmt: skip


@pytest.fixture
def account(sandbox, tmp_path: Path) -> dict[str, Any]:  # noqa: F811
    """A bucket, a role SageMaker may assume, feature files, and the backend over them."""
    from training.features.spec import SPEC_VERSION, spec_for
    from training.families.lstm.synthetic import write_synthetic_feature_file

    target = sandbox.aws_target()
    run_id = new_run_id("sm")
    bucket = f"rc-sm-{run_id}".lower()
    make_client("s3", target).create_bucket(Bucket=bucket)
    iam = make_client("iam", target)
    role = iam.create_role(RoleName=f"rc-sm-{run_id}", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    features = tmp_path / "features"
    write_synthetic_feature_file(features, UNIT, 9000, 3, stored_hash=spec_for(UNIT).hash, spec_version=SPEC_VERSION)
    options = {"role_arn": role, "bucket": bucket, "features_dir": str(features), "instance_type": "ml.m5.large"}
    store = LocalArtifactStore(tmp_path / "store")
    backend = backend_class("sagemaker")(
        BackendContext(run_id=run_id, store=store, aws=lambda: target, work_dir=tmp_path / "work", options=options)
    )
    return {"target": target, "run_id": run_id, "bucket": bucket, "role": role, "backend": backend, "store": store,
            "sm": make_client("sagemaker", target), "url": sandbox.moto_url}  # fmt: skip


def spec(account: dict[str, Any], name: str, epochs: int, **kw: Any) -> JobSpec:
    return JobSpec(run_id=account["run_id"], name=name, family="lstm", units=(UNIT,),
                   params={"train": {**TRAIN, "epochs": epochs}, "gates": {"min_trades": 5}}, **kw)  # fmt: skip


def raw_request(account: dict[str, Any], name: str, **over: Any) -> dict[str, Any]:
    request = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "retrain-console-training:latest", "TrainingInputMode": "File"},
        "RoleArn": account["role"],
        "OutputDataConfig": {"S3OutputPath": f"s3://{account['bucket']}/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    request.update(over)
    return request


def test_create_training_job_is_validated_like_aws(account: dict[str, Any]) -> None:
    from botocore.exceptions import ClientError

    sm = account["sm"]
    name = f"sm-{account['run_id']}-a"
    cases = [
        (raw_request(account, name, RoleArn=account["role"].replace("rc-sm-", "rc-missing-")), "Could not assume role"),
        (raw_request(account, name, EnableManagedSpotTraining=True,
                     StoppingCondition={"MaxRuntimeInSeconds": 600, "MaxWaitTimeInSeconds": 60}),
         "Invalid MaxWaitTimeInSeconds"),  # fmt: skip
        (raw_request(account, "bad_name!"), "trainingJobName"),
    ]
    for request, words in cases:
        with pytest.raises(ClientError) as refused:
            sm.create_training_job(**request)
        assert refused.value.response["Error"]["Code"] == "ValidationException" and words in str(refused.value)
    sm.create_training_job(**raw_request(account, name))  # no channels: it fails inside, with the reason
    with pytest.raises(ClientError) as twice:
        sm.create_training_job(**raw_request(account, name))
    assert twice.value.response["Error"]["Code"] == "ResourceInUse"
    deadline = time.monotonic() + 60
    while (d := sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert d["TrainingJobStatus"] == "Failed" and "refusing to train locally" in d["FailureReason"]
    with pytest.raises(ClientError) as unknown:
        sm.describe_training_job(TrainingJobName=f"sm-{account['run_id']}-nothing")
    assert "not found" in str(unknown.value)


@pytest.mark.slow
def test_a_spot_interruption_resumes_from_the_checkpoints_and_trains_every_epoch_once(account: dict[str, Any],
                                                                                     tmp_path: Path) -> None:  # fmt: skip
    backend = account["backend"]
    epochs = 4
    ref = backend.submit(spec(account, f"sm-{account['run_id']}-spot", epochs))
    seen: list[JobEvent] = []

    def on_event(event: JobEvent) -> None:
        seen.append(event)
        if event.kind == "epoch" and event.data["epoch"] == 2:  # interrupt the third epoch
            body = json.dumps({"job_name": ref.name}).encode()
            urllib.request.urlopen(urllib.request.Request(f"{account['url']}/_sandbox/sagemaker/interrupt", body,
                                                          method="POST"), timeout=10).read()  # fmt: skip

    status = backend.follow(ref, on_event, should_stop=lambda: False)
    assert status.phase is JobPhase.SUCCEEDED, status.reason
    secondary = [e.data.get("secondary") for e in seen if e.kind == "log" and e.data.get("secondary")]
    assert secondary.index("Interrupted") < secondary.index("Restarting") < len(secondary) - 1
    assert [e.data["epoch"] for e in seen if e.kind == "epoch"] == list(range(1, epochs + 1))
    resumed = [e.message for e in seen if e.kind == "log" and '"resumed_from": ' in e.message]
    assert len(resumed) == 2 and '"resumed_from": 0' in resumed[0] and '"resumed_from": 0' not in resumed[1]
    assert status.billable_s is not None and status.training_s is not None and status.billable_s < status.training_s
    collected = backend.collect(ref, tmp_path / "collected")
    local = account["store"].download_version(collected.version, tmp_path / "verified")
    history = json.loads(next(local.rglob("training_log.json")).read_text())
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))  # the same epochs as uninterrupted


def test_max_runtime_stops_the_job_as_a_failure_with_its_reason(account: dict[str, Any]) -> None:
    backend = account["backend"]
    ref = backend.submit(spec(account, f"sm-{account['run_id']}-slow", 500, max_runtime_s=2))
    status = backend.follow(ref, lambda e: None, should_stop=lambda: False)
    assert (status.phase, status.secondary) == (JobPhase.FAILED, "MaxRuntimeExceeded")
    assert "MaxRuntimeExceeded" in status.reason and "MaxRuntimeInSeconds" in status.reason
    with pytest.raises(Exception, match="has no model to collect"):
        backend.collect(ref, Path(account["bucket"]))
