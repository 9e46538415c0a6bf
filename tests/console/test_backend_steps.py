"""The retrain steps are generic over training backends: the train step submits one job per
symbol or one array job, follows it and reports its units; the launch, sync and terminate
steps end SKIPPED, saying why, for a backend that manages its own instances; and the
checklist's ``backend`` parameter picks the backend (``console run --backend`` overrides it).

The backends here are small ones written for the test against the protocol (as
tests/training/test_family_run.py does for families): what is tested is the steps' side
of the seam. The ``ssh`` backend itself runs in the end-to-end tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar

import pytest

from console.checklist.engine import Engine
from console.outputs import TrainOutputs
from console.settings import load_settings
from console.state import RunStatus, StateStore
from console.steps import load_checklist
from remote.backends import BACKENDS
from remote.backends.base import (
    BackendCapability,
    BackendContext,
    Collected,
    EventSink,
    JobEvent,
    JobPhase,
    JobRef,
    JobSpec,
    JobStatus,
    Prepared,
    RunPlan,
)
from tests.console.cli import assert_one_line_error, console

CHECKLIST = """
[checklist]
name = "managed"
[params]
symbols = ["BTC-USD", "ETH-USD"]
epochs = 2
backend = "{backend}"
[defaults]
retries = 0
timeout_s = 60
[[steps]]
name = "launch"
[[steps]]
name = "sync"
[[steps]]
name = "train"
[[steps]]
name = "upload"
[[steps]]
name = "terminate"
"""


class _Managed:
    """A service that starts its own machines; every unit trains for two epochs and is promoted."""

    name: ClassVar[str] = "managed-test"
    capabilities: ClassVar[frozenset[BackendCapability]] = frozenset(
        {BackendCapability.MANAGES_INSTANCES, BackendCapability.RUNS_ARRAYS})
    submitted: ClassVar[list[JobSpec]] = []

    def __init__(self, context: BackendContext) -> None:
        self.context = context

    def prepare(self, plan: RunPlan) -> Prepared:
        return Prepared(f"ready for {len(plan.units)} units")

    def submit(self, spec: JobSpec) -> JobRef:
        type(self).submitted.append(spec)
        return JobRef(self.name, spec.name, f"job-{spec.name}", spec.run_id, {"units": list(spec.units)})

    def follow(self, ref: JobRef, on_event: EventSink, *, should_stop: Callable[[], bool]) -> JobStatus:
        for unit in ref.data["units"]:
            for epoch in (1, 2):
                on_event(JobEvent(ref.name, "epoch", f"{unit} epoch {epoch}/2", unit=unit,
                                  data={"symbol": unit, "epoch": epoch, "epochs": 2, "loss": 0.5}))
            on_event(JobEvent(ref.name, "done", f"{unit}: succeeded", unit=unit,
                              data={"state": "succeeded", "epochs": 2, "promoted": True}))
        return JobStatus(ref, JobPhase.SUCCEEDED, training_s=3.0)

    def status(self, ref: JobRef) -> JobStatus:
        return JobStatus(ref, JobPhase.SUCCEEDED)

    def cancel(self, ref: JobRef) -> JobStatus:
        return JobStatus(ref, JobPhase.STOPPED)

    def collect(self, ref: JobRef, dest: Path) -> Collected:
        return Collected("20261204T000000Z-" + ref.run_id, len(ref.data["units"]), 10, "the test's store")

    def release(self, run_id: str) -> tuple[str, ...]:
        raise AssertionError("a managed backend has nothing to release; the step must not ask")


class _ManagedPerUnit(_Managed):
    """The same service without array jobs: one job per unit."""

    name: ClassVar[str] = "managed-per-unit"
    capabilities: ClassVar[frozenset[BackendCapability]] = frozenset({BackendCapability.MANAGES_INSTANCES})


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> type[_Managed]:
    monkeypatch.setitem(BACKENDS, _Managed.name, f"{__name__}:_Managed")
    monkeypatch.setitem(BACKENDS, _ManagedPerUnit.name, f"{__name__}:_ManagedPerUnit")
    _Managed.submitted.clear()
    return _Managed


def _drive(tmp_path: Path, backend: str) -> tuple[StateStore, str, Any]:
    settings = load_settings(flags={"state_dir": str(tmp_path / "state"), "profile": "aws"}).settings
    store = StateStore.open(settings.state_dir)
    path = tmp_path / "managed.toml"
    path.write_text(CHECKLIST.replace("{backend}", backend))
    spec = load_checklist(str(path), profile="aws")
    engine = Engine(settings, store)
    run_id = engine.create_run(spec)
    return store, run_id, engine.drive(run_id, spec)


def test_a_backend_that_manages_its_instances_skips_launch_sync_and_terminate_saying_why(tmp_path, backends):
    store, run_id, outcome = _drive(tmp_path, "managed-test")
    assert outcome.status is RunStatus.SUCCEEDED, outcome.message
    steps = {s.name: s for s in store.steps(run_id)}
    for name in ("launch", "sync", "terminate"):
        assert steps[name].state == "skipped"
        assert "managed-test backend manages its own instances" in steps[name].summary
    assert steps["train"].state == "succeeded" and steps["upload"].state == "succeeded"
    assert store.instances(run_id=run_id) == []  # nothing launched here


def test_an_array_backend_gets_one_job_for_every_symbol_and_its_progress_reaches_the_front_ends(tmp_path, backends):
    store, run_id, _ = _drive(tmp_path, "managed-test")
    [job] = backends.submitted
    assert job.units == ("BTC-USD", "ETH-USD") and job.array_size == 2 and job.family == "lstm"
    assert job.params["train"]["epochs"] == 2 and job.params["schedule"]["mode"] == "hybrid"
    train = TrainOutputs.model_validate(store.step_outputs(run_id, "train"))
    assert train.backend == "managed-test" and [j["name"] for j in train.jobs] == [job.name]
    step = store.get_step(run_id, "train")
    assert step.summary == "trained 2 of 2 symbols in 3s; 2 promoted to champion"
    assert [r[0] for r in step.details["table"]["rows"]] == ["BTC-USD", "ETH-USD"]
    progress = [e for e in store.events(run_id) if e.kind == "train.progress"]
    assert [(e.data["symbol"], e.data["epoch"]) for e in progress] == [
        ("BTC-USD", 1), ("BTC-USD", 2), ("ETH-USD", 1), ("ETH-USD", 2)]
    assert store.step_outputs(run_id, "upload")["version"].endswith(run_id)


def test_a_backend_without_arrays_gets_one_job_per_symbol(tmp_path, backends):
    store, run_id, outcome = _drive(tmp_path, "managed-per-unit")
    assert outcome.status is RunStatus.SUCCEEDED, outcome.message
    assert [j.units for j in backends.submitted] == [("BTC-USD",), ("ETH-USD",)]
    assert len({j.name for j in backends.submitted}) == 2  # each its own idempotency key
    assert len(TrainOutputs.model_validate(store.step_outputs(run_id, "train")).jobs) == 2


def test_the_retrain_checklist_trains_over_ssh_unless_the_command_line_says_otherwise(tmp_path):
    spec = load_checklist("retrain", profile="sandbox")
    assert {s.name: getattr(s.params, "backend", None) for s in spec.steps if s.name in ("launch", "train")} == \
        {"launch": "ssh", "train": "ssh"}
    refused = console("run", "--checklist", "retrain", "--backend", "no-such-backend", "--state-dir", str(tmp_path))
    assert_one_line_error(refused, 2, "unknown training backend 'no-such-backend'", "sagemaker", "ssh")
