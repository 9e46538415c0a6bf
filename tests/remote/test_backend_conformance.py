"""Every registered training backend keeps the `TrainingBackend` contract (as every family
keeps `ModelFamily`'s): submitting is idempotent per run and job, following reports the
units' progress and ends in a finished phase, collecting puts verified artifacts in the
store, cancelling stops a running job, and capabilities are what the checklist asks.

A backend registered in `remote.backends.BACKENDS` needs a harness here: how to build it on
something real that runs on this machine. The ``ssh`` backend's harness is the package's
fake provider (machines are directories; `remote.providers.fake`) with the local runner,
so the backend's own code -- the scheduler command, the detached job, the log follow, the
checkpoint shelf, the results, the collect -- runs for real, training the lstm family.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from remote.backends import backend_class, backend_names
from remote.backends.base import (
    BackendCapability,
    BackendContext,
    JobEvent,
    JobPhase,
    JobSpec,
    RunPlan,
    TrainingBackend,
)
from remote.storage import LocalArtifactStore
from tests.remote.sandbox_fixtures import sandbox  # noqa: F401  (the sagemaker harness's moto)

pytestmark = pytest.mark.slow
UNIT = "BTC-USD"


@dataclass
class Harness:
    backend: TrainingBackend
    store: LocalArtifactStore
    run_id: str
    params: dict[str, Any]
    family: str = "lstm"
    units: tuple[str, ...] = (UNIT,)
    array_size: int = 1
    model_file: str = "model.pt"
    slow_params: dict[str, Any] | None = None
    """What makes the job run long enough to cancel (default: 500 epochs of the lstm)."""
    close: Callable[[], None] = lambda: None


class FakeHostPool:
    """The ssh backend's host pool over the fake provider: the run's machine, readied the way
    the console's sync step readies one (code, features, a sandbox-kind lease)."""

    max_replacements = 1

    def __init__(self, provider: Any, run_id: str, features: Path) -> None:
        from remote.providers.base import LaunchSpec

        self.provider, self.run_id, self.features = provider, run_id, features
        self.spec = LaunchSpec(run_id=run_id, owner="test", ssh_cidr="127.0.0.1/32")
        self.replaced = 0

    def acquire(self) -> Any:
        return self.current()

    def current(self) -> Any:
        from remote.backends.ssh import SshHost

        return SshHost(self.provider.launch(self.spec).instance.id, gpu="none - CPU only")

    def runner(self, host: Any, *, sleep: Callable[[float], None]) -> Any:
        runner = self.provider.runner(host.instance_id)
        runner._sleep = sleep
        return runner

    def ready(self, host: Any, runner: Any) -> Any:
        import training
        from remote.sync import sync_dir
        from training.guard import Lease

        layout = host.layout
        sync_dir(runner, Path(training.__file__).parent, f"{layout.code}/training", delete=True)
        sync_dir(runner, self.features, layout.features, delete=True)
        lease = Lease.issue(
            run_id=self.run_id,
            host_kind="sandbox",
            instance_id=host.instance_id,
            host_key_fingerprint="SHA256:no-ssh-on-a-local-machine",
            operator_machine_id="test",
            valid_for=timedelta(hours=1),
        )
        runner.write_text(layout.lease, lease.to_json() + "\n", mode=0o600)
        return host

    def lost_reason(self, host: Any) -> str | None:
        inst = self.provider.describe(host.instance_id)
        return None if inst.is_live else f"it is {inst.state}"

    def can_replace(self) -> bool:
        return True

    def watches_spot_notices(self) -> bool:
        return True

    def replace(self, host: Any, why: str) -> Any:
        self.provider.terminate(host.instance_id)
        self.replaced += 1
        return self.current()

    def replacements(self) -> int:
        return self.replaced

    def release(self) -> tuple[str, ...]:
        ids = tuple(i.id for i in self.provider.list_managed() if i.run_id == self.run_id)
        for iid in ids:
            self.provider.terminate(iid)
        return ids


def ssh_harness(tmp_path: Path, request: pytest.FixtureRequest) -> Harness:
    from remote.providers.fake import FakeProvider
    from training.features.spec import SPEC_VERSION, spec_for
    from training.families.lstm.synthetic import write_synthetic_feature_file

    run_id = f"conf-{time.monotonic_ns()}"
    features = tmp_path / "features"
    # Made-up features under the real spec's name and hash: what the trainer recomputes and accepts.
    write_synthetic_feature_file(features, UNIT, 9000, 3, stored_hash=spec_for(UNIT).hash, spec_version=SPEC_VERSION)
    store = LocalArtifactStore(tmp_path / "store")
    pool = FakeHostPool(FakeProvider(tmp_path / "cloud"), run_id, features)
    backend = backend_class("ssh")(BackendContext(run_id=run_id, store=store, hosts=pool, work_dir=tmp_path / "work"))
    params = {
        "train": {
            "epochs": 2,
            "window": 8,
            "longest_feature_window": 10,
            "hidden_size": 8,
            "num_layers": 1,
            "batch_size": 64,
            "device": "cpu",
        },
        "gates": {"min_trades": 5},
        "schedule": {"mode": "sequential", "max_concurrent": 1},
    }
    return Harness(backend, store, run_id, params)


def sagemaker_harness(tmp_path: Path, request: pytest.FixtureRequest) -> Harness:
    """The sagemaker backend on the sandbox: boto3 over HTTP to moto, whose SageMaker front runs
    the container entry point for real (`remote.sandbox.sagemaker_jobs`)."""
    from remote.providers.aws_client import make_client
    from training.features.spec import SPEC_VERSION, spec_for
    from training.families.lstm.synthetic import write_synthetic_feature_file

    sandbox = request.getfixturevalue("sandbox")
    run_id = f"conf-{time.monotonic_ns()}"
    features = tmp_path / "features"
    write_synthetic_feature_file(features, UNIT, 9000, 3, stored_hash=spec_for(UNIT).hash, spec_version=SPEC_VERSION)
    target = sandbox.aws_target()
    bucket = f"rc-conf-{run_id}".lower()
    make_client("s3", target).create_bucket(Bucket=bucket)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "sagemaker.amazonaws.com"}}
        ],
    }
    role = make_client("iam", target).create_role(
        RoleName=f"rc-conf-{run_id}", AssumeRolePolicyDocument=json.dumps(trust)
    )
    store = LocalArtifactStore(tmp_path / "store")
    options = {
        "role_arn": role["Role"]["Arn"],
        "bucket": bucket,
        "features_dir": str(features),
        "instance_type": "ml.m5.large",
    }
    backend = backend_class("sagemaker")(
        BackendContext(run_id=run_id, store=store, aws=lambda: target, work_dir=tmp_path / "work", options=options)
    )
    params = {
        "train": {
            "epochs": 2,
            "window": 8,
            "longest_feature_window": 10,
            "hidden_size": 8,
            "num_layers": 1,
            "batch_size": 64,
            "device": "cpu",
        },
        "gates": {"min_trades": 5},
    }
    return Harness(backend, store, run_id, params)


def batch_harness(tmp_path: Path, request: pytest.FixtureRequest) -> Harness:
    """The batch backend on the sandbox: boto3 over HTTP to moto, whose Batch front runs each
    array child as a local process with Batch's environment (`remote.sandbox.batch_jobs`),
    training gbm heads on a shared encoder, two children over three coins."""
    from training.families.gbm.params import GbmParams
    from training.families.gbm.synthetic import COINS, fit_shared_encoder, write_coins

    sandbox = request.getfixturevalue("sandbox")
    run_id = f"conf-{time.monotonic_ns()}"
    raw = {
        "split": {"longest_feature_window": 10},
        "encoder": {"n_components": 3},
        "gates": {"min_trades": 5},
        "head": {"rounds": 40, "num_leaves": 7, "min_data_in_leaf": 40, "early_stopping": 10},
    }
    paths = write_coins(tmp_path / "features", COINS, 1500, seed=4, signal=1.0)
    fit_shared_encoder(paths, GbmParams.from_mapping(raw), tmp_path / "encoder")
    store = LocalArtifactStore(tmp_path / "store")
    options = {
        "bucket": f"rc-conf-{run_id}".lower(),
        "features_dir": str(tmp_path / "features"),
        "encoder_dir": str(tmp_path / "encoder"),
        "poll_s": 0.3,
    }
    backend = backend_class("batch")(
        BackendContext(run_id=run_id, store=store, aws=sandbox.aws_target, work_dir=tmp_path / "work", options=options)
    )
    slow = {"head": {"rounds": 200000, "early_stopping": 200000, "learning_rate": 0.0001, "num_leaves": 7}}
    return Harness(
        backend, store, run_id, raw, family="gbm", units=COINS, array_size=2, model_file="model.bin", slow_params=slow
    )


HARNESSES: dict[str, Callable[[Path, pytest.FixtureRequest], Harness]] = {
    "batch": batch_harness,
    "ssh": ssh_harness,
    "sagemaker": sagemaker_harness,
}
"""How each registered backend is built on this machine for the test."""


@pytest.fixture(params=backend_names())
def harness(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    make = HARNESSES.get(request.param)
    assert make is not None, f"backend {request.param!r} has no harness in {__name__}: add one to HARNESSES"
    made = make(tmp_path, request)
    yield made
    made.close()


def _spec(h: Harness, name: str, **params: Any) -> JobSpec:
    return JobSpec(
        run_id=h.run_id,
        name=name,
        family=h.family,
        units=h.units,
        params={**h.params, **params},
        array_size=h.array_size,
    )


def test_capabilities_are_the_seams_own_and_the_name_is_the_registrys(harness: Harness) -> None:
    assert isinstance(harness.backend, TrainingBackend)
    assert harness.backend.capabilities <= set(BackendCapability)
    assert backend_class(harness.backend.name) is type(harness.backend)


def test_a_job_is_submitted_once_followed_to_the_end_and_collected_verified(harness: Harness, tmp_path: Path) -> None:
    b = harness.backend
    b.prepare(RunPlan(harness.run_id, "fake.small", units=harness.units))
    spec = _spec(harness, f"train-{harness.run_id}")
    ref = b.submit(spec)
    again = b.submit(spec)
    assert (again.backend, again.name, again.job_id) == (ref.backend, ref.name, ref.job_id)
    seen: list[JobEvent] = []
    status = b.follow(ref, seen.append, should_stop=lambda: False)
    assert status.phase is JobPhase.SUCCEEDED, (status.reason, [e.message for e in seen if e.kind == "log"][-5:])
    epochs = [e for e in seen if e.kind == "epoch"]
    assert {e.unit for e in epochs} == set(harness.units)
    if harness.family == "lstm":
        assert [e.data["epoch"] for e in epochs] == [1, 2]
    done = [e for e in seen if e.kind == "done"]
    assert sorted(e.unit for e in done) == sorted(harness.units)
    assert all(e.data["state"] == "succeeded" for e in done)
    assert b.status(ref).phase is JobPhase.SUCCEEDED
    collected = b.collect(ref, tmp_path / "collected")
    assert collected.files > 0 and collected.bytes > 0
    local = harness.store.download_version(collected.version, tmp_path / "verified")  # every sha256 checked
    assert sum(p.name == harness.model_file for p in local.rglob("*")) == len(harness.units)
    assert json.loads(next(local.rglob("verdict.json")).read_text())["family"] == harness.family


def test_a_running_job_is_cancelled_and_stays_stopped(harness: Harness) -> None:
    b = harness.backend
    b.prepare(RunPlan(harness.run_id, "fake.small", units=harness.units))
    slow_params = harness.slow_params or {"train": {**harness.params["train"], "epochs": 500}}
    ref = b.submit(_spec(harness, f"train-{harness.run_id}-slow", **slow_params))
    deadline = time.monotonic() + 60
    while b.status(ref).phase is not JobPhase.RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
    stopped = b.cancel(ref)
    assert stopped.phase in (JobPhase.STOPPED, JobPhase.STOPPING)
    deadline = time.monotonic() + 30
    while not b.status(ref).phase.finished and time.monotonic() < deadline:
        time.sleep(0.2)
    assert b.status(ref).phase in (JobPhase.FAILED, JobPhase.STOPPED)  # ended by the signal: never "succeeded"
