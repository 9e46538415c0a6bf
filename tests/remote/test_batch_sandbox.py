"""The sandbox runs AWS Batch array jobs for real: each child a process with Batch's environment,
array sizes checked as AWS checks them, spot reclaims retried by the job's retry strategy.
And the array child's own refusals: a manifest that does not match the array, no job token."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from remote.backends.batch import RETRY_ON_RECLAIM, shards
from remote.providers.aws_client import make_client
from tests.remote.sandbox_fixtures import sandbox  # noqa: F401
from training.container.batch import BadManifest, check_guard, child_index, shard_of
from training.errors import LocalTrainingRefused

pytestmark = pytest.mark.slow


@pytest.fixture
def batch(sandbox: Any, tmp_path: Path) -> Any:  # noqa: F811 - the fixture imported above
    """A Batch client and a queue + definition whose command records each child's environment."""
    from remote.backends.base import BackendContext
    from remote.backends.batch import BatchBackend

    name = f"t{time.monotonic_ns()}"
    backend = BatchBackend(BackendContext(aws=sandbox.aws_target, options={"bucket": name, "queue": name,
                                                                             "job_definition": name}))
    backend._ensure_queue()
    client = make_client("batch", sandbox.aws_target())
    script = ("import json, os, sys, time; time.sleep(float(os.environ.get('NAP', '0')));"
              "i = os.environ.get('AWS_BATCH_JOB_ARRAY_INDEX', 'none');"
              "open(os.path.join(os.environ['OUT'], i + '-' + os.environ['AWS_BATCH_JOB_ATTEMPT']), 'w')"
              ".write(json.dumps({k: v for k, v in os.environ.items() if k.startswith(('AWS_BATCH', 'RC_SOURCE'))}))")
    client.register_job_definition(jobDefinitionName=f"{name}-rec", type="container",
                                   containerProperties={"image": "x", "command": ["python", "-c", script],
                                                        "resourceRequirements": [{"type": "VCPU", "value": "1"},
                                                                                 {"type": "MEMORY", "value": "512"}]})
    return client, name, sandbox


def _wait(client: Any, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.describe_jobs(jobs=[job_id])["jobs"][0]
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def _submit(client: Any, name: str, out: Path, size: int | None, **extra: Any) -> str:
    env = [{"name": "OUT", "value": str(out)}] + extra.pop("env", [])
    request = {"jobName": "rec", "jobQueue": name, "jobDefinition": f"{name}-rec",
               "containerOverrides": {"environment": env}, **extra}
    if size:
        request["arrayProperties"] = {"size": size}
    return client.submit_job(**request)["jobId"]


def test_array_children_run_as_processes_with_batchs_environment(batch: Any, tmp_path: Path) -> None:
    client, name, _ = batch
    job_id = _submit(client, name, tmp_path, 3)
    job = _wait(client, job_id)
    assert job["status"] == "SUCCEEDED" and job["arrayProperties"]["statusSummary"] == {"SUCCEEDED": 3}
    hosts = set()
    for i in range(3):
        env = json.loads((tmp_path / f"{i}-1").read_text())
        assert env["AWS_BATCH_JOB_ARRAY_INDEX"] == str(i) and env["AWS_BATCH_JOB_ID"] == f"{job_id}:{i}"
        hosts.add(env["RC_SOURCE_ADDRESS"])
    assert len(hosts) == 3 and all(h.startswith("127.2.") for h in hosts)  # each child is its own host
    children = client.list_jobs(arrayJobId=job_id)["jobSummaryList"]
    assert sorted(c["arrayProperties"]["index"] for c in children) == [0, 1, 2]


@pytest.mark.parametrize("size", [1, 10_001])
def test_array_sizes_outside_aws_limits_are_refused(batch: Any, tmp_path: Path, size: int) -> None:
    client, name, _ = batch
    with pytest.raises(ClientError, match="between 2 and 10,000"):
        _submit(client, name, tmp_path, size)


def test_a_reclaimed_spot_child_is_retried_and_succeeds(batch: Any, tmp_path: Path) -> None:
    client, name, sandbox = batch
    job_id = _submit(client, name, tmp_path, 2, env=[{"name": "NAP", "value": "3"}],
                     retryStrategy={"attempts": 2, "evaluateOnExit": RETRY_ON_RECLAIM})
    deadline = time.monotonic() + 30
    while client.describe_jobs(jobs=[f"{job_id}:1"])["jobs"][0]["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    request = urllib.request.Request(f"{sandbox.aws_target().endpoint_url}/_sandbox/batch/reclaim", method="POST",
                                     data=json.dumps({"job_id": f"{job_id}:1"}).encode())
    urllib.request.urlopen(request, timeout=10).read()
    job = _wait(client, job_id)
    assert job["status"] == "SUCCEEDED"
    child = client.describe_jobs(jobs=[f"{job_id}:1"])["jobs"][0]
    assert [a["statusReason"] for a in child["attempts"]][0].startswith("Host EC2")
    assert (tmp_path / "1-2").exists() and not (tmp_path / "1-1").exists()


def test_a_terminated_array_fails_every_running_child(batch: Any, tmp_path: Path) -> None:
    client, name, _ = batch
    job_id = _submit(client, name, tmp_path, 2, env=[{"name": "NAP", "value": "30"}])
    time.sleep(1.0)
    client.terminate_job(jobId=job_id, reason="operator")
    job = _wait(client, job_id, timeout=20)
    assert job["status"] == "FAILED" and "operator" in job["statusReason"]


def test_the_child_refuses_a_manifest_that_does_not_match_the_array() -> None:
    manifest = {"shards": [["BTC-USD"], ["ETH-USD"]], "array_size": 2}
    assert shard_of(manifest, {"RC_ARRAY_SIZE": "2"}, 1) == ["ETH-USD"]
    with pytest.raises(BadManifest, match="lists 2 shards but the array job has 3 children"):
        shard_of(manifest, {"RC_ARRAY_SIZE": "3"}, 0)
    with pytest.raises(BadManifest, match="outside"):
        shard_of(manifest, {"RC_ARRAY_SIZE": "2"}, 2)
    assert child_index({"AWS_BATCH_JOB_ID": "abc:4"}) == 4 and child_index({}) == 0
    assert shards(("A", "B", "C"), 2) == [["A", "C"], ["B"]]


def test_the_child_refuses_to_train_without_the_consoles_token() -> None:
    import hashlib

    manifest = {"job_name": "train-x", "rc_job_token_sha256": hashlib.sha256(b"train-x:secret-at-run").hexdigest()}
    token = "secret-at-run"
    check_guard({"RC_JOB_NAME": "train-x", "RC_JOB_TOKEN": token}, manifest)
    with pytest.raises(LocalTrainingRefused, match="refusing to train locally"):
        check_guard({"RC_JOB_NAME": "train-x", "RC_JOB_TOKEN": token + "x"}, manifest)
    with pytest.raises(LocalTrainingRefused, match="refusing to train locally"):
        check_guard({}, manifest)


def test_collect_takes_nothing_half_written_by_a_killed_child(tmp_path: Path) -> None:
    import hashlib

    from remote.backends.batch_collect import gather
    from remote.errors import StorageError

    model = b"tree\nversion=v4\n"
    folder = "models/BTC-USD/20261205T000000Z"
    objects = {
        f"out/{folder}/model.bin": model,
        f"out/{folder}/sha256.txt": f"{hashlib.sha256(model).hexdigest()}  model.bin\n".encode(),
        "out/results/0.json": json.dumps({"units": [{"unit": "BTC-USD", "state": "succeeded", "model_dir": folder,
                                                     "timestamp": "20261205T000000Z", "passed": False}]}).encode(),
    }  # fmt: skip
    # Child 1 was killed mid-upload: a folder without its sha256.txt and no results file.
    objects["out/models/ETH-USD/20261205T000000Z/model.bin"] = b"tree\npart"
    summary = gather(objects.get, 2, tmp_path / "ok")
    assert summary["missing_children"] == [1] and [u["unit"] for u in summary["units"]] == ["BTC-USD"]
    assert (tmp_path / "ok" / folder / "model.bin").read_bytes() == model
    assert not (tmp_path / "ok" / "models" / "ETH-USD").exists()
    # A file that differs from its hash is refused, and nothing of its folder is left behind.
    objects[f"out/{folder}/model.bin"] = b"tree\ntampered"
    with pytest.raises(StorageError, match="differs from its sha256"):
        gather(objects.get, 2, tmp_path / "bad")
    assert not (tmp_path / "bad" / folder).exists()
