"""The sync, upload and download checklist steps against a real sshd and a real moto S3.

The sshd's sessions see a stand-in ``nvidia-smi`` first on PATH (sshd_config SetEnv), so
the host reads as a GPU box; everything else is real: pinning, delta sync, the lease
written over SFTP, the artifacts fetched over SSH, the upload with sha256 and the
verified download.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from pathlib import Path

import boto3
import pytest

from console.checklist.step import StepContext, StepState
from console.errors import StepFailed
from console.settings import Settings
from console.steps.cloud_sync import Download, Sync, Upload
from console.steps.params import DownloadParams, SyncParams, UploadParams
from remote.backends.ssh.hosts import RemoteLayout
from remote.errors import StorageError
from remote.storage import ArtifactTags, S3ArtifactStore


def _layout(launch: dict) -> RemoteLayout:
    return RemoteLayout.at(launch.get("remote_root"))


class _Outputs:
    """Stands in for the state store's step outputs (the only part the steps read)."""

    def __init__(self) -> None:
        self.outputs: dict[str, dict] = {}

    def step_outputs(self, run_id: str, step_name: str) -> dict:
        return self.outputs.get(step_name, {})


@pytest.fixture
def gpu_sshd(start_sshd, tmp_path_factory):
    fakebin = tmp_path_factory.mktemp("fakebin")
    smi = fakebin / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA A10G, 3, 100, 23028, 40, 60.5'\n")
    smi.chmod(0o755)
    return start_sshd(f"SetEnv PATH={fakebin}:{os.environ['PATH']}")


@pytest.fixture
def world(tmp_path, gpu_sshd, client_key, moto_endpoint, aws_credentials):
    settings = Settings(profile="aws", state_dir=tmp_path / "state", data_dir=tmp_path / "data",
                        s3_bucket="rc-steps-" + secrets.token_hex(5), aws_endpoint_url=moto_endpoint,
                        aws_region="us-east-1", aws_access_key_id=aws_credentials["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=aws_credentials["AWS_SECRET_ACCESS_KEY"])
    features = tmp_path / "data/features"
    features.mkdir(parents=True)
    (features / "BTC-USD.parquet").write_bytes(os.urandom(50_000))
    (features / "ETH-USD.parquet").write_bytes(os.urandom(10_000))  # not asked for
    outputs = _Outputs()
    outputs.outputs["launch"] = {
        "instance_id": "i-0feedface0000001", "host": "127.0.0.1", "port": gpu_sshd.port,
        "user": __import__("getpass").getuser(), "key_path": str(client_key.private_path), "provider": "ec2",
        "host_key_publication": gpu_sshd.console_output, "remote_root": str(tmp_path / "host/rc"),
    }
    return settings, outputs, tmp_path


def _ctx(world, name, params) -> StepContext:
    settings, outputs, tmp = world
    run_dir = tmp / "run"
    run_dir.mkdir(exist_ok=True)
    return StepContext(run_id="run-7", step_name=name, attempt=1, params=params, settings=settings,
                       state=outputs, log=logging.getLogger(f"test.{name}"), run_dir=run_dir,
                       cancelled=threading.Event(), deadline=float("inf"), emit=lambda *a, **k: None)


@pytest.mark.slow
def test_sync_sends_code_and_asked_features_and_writes_the_lease(world):
    settings, outputs, tmp = world
    result = Sync().run(_ctx(world, "sync", SyncParams(symbols=["BTC-USD"])))
    assert result.state is StepState.SUCCEEDED
    layout = _layout(outputs.outputs["launch"])
    host_features = Path(layout.features)
    assert sorted(p.name for p in host_features.iterdir() if not p.name.startswith(".")) == ["BTC-USD.parquet"]
    assert (Path(layout.code) / "training/guard.py").is_file()
    lease = json.loads(Path(layout.lease).read_text())
    assert lease["run_id"] == "run-7" and lease["host_kind"] == "aws"
    assert lease["instance_id"] == "i-0feedface0000001" and lease["host_key_fingerprint"].startswith("SHA256:")
    assert oct(Path(layout.lease).stat().st_mode & 0o777) == "0o600"
    assert result.outputs.gpu == "1x NVIDIA A10G"
    again = Sync().run(_ctx(world, "sync", SyncParams(symbols=["BTC-USD"])))
    assert again.summary.startswith("code 0 sent")


def test_sync_refuses_when_a_feature_file_is_missing(world):
    with pytest.raises(StepFailed, match="SOL-USD"):
        Sync().run(_ctx(world, "sync", SyncParams(symbols=["BTC-USD", "SOL-USD"])))


def test_upload_then_download_places_verified_models(world):
    settings, outputs, tmp = world
    outputs.outputs["sync"] = {"gpu": "1x NVIDIA A10G"}
    artifacts = Path(_layout(outputs.outputs["launch"]).artifacts)
    model = artifacts / "models/BTC-USD/20261123T100000Z"
    model.mkdir(parents=True)
    (model / "model.pt").write_bytes(os.urandom(4096))
    (artifacts / "champions").mkdir()
    rel = "models/BTC-USD/20261123T100000Z"
    (artifacts / "champions/BTC-USD.json").write_text(json.dumps({"model_dir": rel, "promoted_at": "2026-11-23T10:00:00Z"}))
    (artifacts / "roster.json").write_text(json.dumps({"symbols": {"BTC-USD": {"latest": rel, "latest_passed": True, "champion": rel}}}))
    up = Upload().run(_ctx(world, "upload", UploadParams(symbols=["BTC-USD"])))
    assert up.state is StepState.SUCCEEDED and up.outputs.files == 3
    outputs.outputs["upload"] = up.outputs.model_dump()
    down = Download().run(_ctx(world, "download", DownloadParams(symbols=["BTC-USD"])))
    models = tmp / "data/models"
    assert (models / "models/BTC-USD/20261123T100000Z/model.pt").read_bytes() == (model / "model.pt").read_bytes()
    assert down.outputs.version == up.outputs.version
    # The run's champion is settled into the models dir: pointer and roster say the same.
    assert json.loads((models / "champions/BTC-USD.json").read_text())["model_dir"] == rel
    assert json.loads((models / "roster.json").read_text())["symbols"]["BTC-USD"]["champion"] == rel


def test_upload_with_nothing_trained_fails_clearly(world):
    settings, outputs, tmp = world
    Path(_layout(outputs.outputs["launch"]).artifacts).mkdir(parents=True)
    with pytest.raises(StorageError, match="no artifacts"):
        Upload().run(_ctx(world, "upload", UploadParams(symbols=["BTC-USD"])))


def test_upload_after_a_killed_upload_removes_its_partial_version_and_nothing_else(world, tmp_path):
    settings, outputs, tmp = world
    outputs.outputs["sync"] = {"gpu": "1x NVIDIA A10G"}
    store = S3ArtifactStore(settings.s3_bucket, endpoint_url=settings.aws_endpoint_url, region="us-east-1")
    store.ensure_bucket()
    earlier = tmp_path / "earlier"
    (earlier / "models").mkdir(parents=True)
    (earlier / "models/model.pt").write_bytes(os.urandom(1024))
    # A complete version of this run (an earlier job of it) and one of another run: both stay.
    done = store.upload_version(
        earlier, ArtifactTags("run-7", "2026-11-21", "NVIDIA A10G"), version="20261121T090000Z-run-7"
    )
    other_done = store.upload_version(
        earlier, ArtifactTags("run-6", "2026-11-20", "x"), version="20261120T090000Z-run-6"
    )
    # A killed upload of this run: files up, one multipart upload begun, no manifest, no pointer move.
    # And another run's upload in flight right now: the same, and it must be left alone.
    s3 = boto3.client("s3", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")
    killed, in_flight = "models/20261122T090000Z-run-7/", "models/20261122T090000Z-run-8/"
    for prefix in (killed, in_flight):
        s3.put_object(Bucket=settings.s3_bucket, Key=prefix + "models/model.pt", Body=os.urandom(512))
        s3.put_object(Bucket=settings.s3_bucket, Key=prefix + "roster.json", Body=b"{}")
        begun = s3.create_multipart_upload(Bucket=settings.s3_bucket, Key=prefix + "models/big.pt")
        s3.upload_part(
            Bucket=settings.s3_bucket,
            Key=prefix + "models/big.pt",
            UploadId=begun["UploadId"],
            PartNumber=1,
            Body=os.urandom(1024),
        )
    artifacts = Path(_layout(outputs.outputs["launch"]).artifacts)
    (artifacts / "models").mkdir(parents=True)
    (artifacts / "models/model.pt").write_bytes(os.urandom(2048))
    events: list[tuple[str, dict]] = []
    ctx = _ctx(world, "upload", UploadParams(symbols=["BTC-USD"]))
    ctx.emit = lambda kind, message, **data: events.append((kind, data))

    up = Upload().run(ctx)

    def keys(prefix: str) -> list[str]:
        return [o["Key"] for o in s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix).get("Contents", [])]

    def pending(prefix: str) -> list[str]:
        return [
            u["Key"]
            for u in s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", [])
            if u["Key"].startswith(prefix)
        ]

    assert keys(killed) == [] and pending(killed) == []
    assert len(keys(in_flight)) == 2 and pending(in_flight) == [in_flight + "models/big.pt"]
    assert [v.version for v in store.list_versions()] == [other_done.version, done.version, up.outputs.version]
    assert store.latest().version == up.outputs.version
    fetched = store.download_version(done.version, tmp_path / "check")
    assert (fetched / "models/model.pt").read_bytes() == (earlier / "models/model.pt").read_bytes()
    assert ("artifacts.partial_removed", {"version": "20261122T090000Z-run-7", "store": store.describe()}) in events
    assert [kind for kind, _ in events].count("artifacts.partial_removed") == 1
