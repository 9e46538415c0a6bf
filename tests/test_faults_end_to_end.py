"""Faults the retrain run must survive, end to end on the sandbox profile (issue 9).

A small copy of the shipped retrain checklist (ETH-USD, 3 days, 1 epoch, fetch .. alignment,
no dryrun) runs through the real `console` executable against the real sandbox daemon
(moto over HTTP, SSH hosts). The tests of this module share one state dir, so one sandbox
daemon and one candle store; each drives its own run. The daemon is brought down at the end.

The moto-restart test runs last: a restarted sandbox is an empty cloud (moto keeps its
state in memory and the daemon wipes the instance roots at start).

Known gap, written as what should happen: a SIGKILL inside an atomic write leaves its
hidden ``.<name>.*.tmp`` file behind (the kill test xfails with the paths when that happens).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest

from remote.sandbox import lifecycle
from tests.e2e_support import (
    STEPS,
    World,
    checkpoint_problems,
    console_env,
    epoch_lines,
    half_written_files,
    instance_root,
    instances_of_run,
    kill_group,
    live_instances_of_run,
    model_folders,
    newest_run_id,
    s3_client,
    small_retrain_checklist,
    step_state,
    tree_snapshot,
    verify_model_folder,
    wait_for,
)

pytestmark = pytest.mark.slow

LONG_STEPS = ("fetch", "launch", "sync", "train", "upload")
# The random wait before a kill is 0-1.5 s, cut short for the steps that take a second or
# less on the sandbox, so the kill lands inside them (or the next one), not steps later.
KILL_WAIT_CAP_S = {"features": 0.05, "verify-counts": 0.02, "launch": 0.25, "sync": 0.25, "upload": 0.15, "terminate": 0.3, "download": 0.15}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("e2e")
    state_dir = root / "state"
    w = World(root=root, checklist=small_retrain_checklist(root / "retrain-e2e.toml"),
              env=console_env(root / "home", state_dir))
    try:
        yield w
    finally:
        lifecycle.down(state_dir)


def _run_to_end(world: World, *args: str, log_name: str, timeout: float = 240) -> tuple[str, subprocess.Popen]:
    """Start ``console ARGS`` (creating a new run), return (run id, process)."""
    store = world.store()
    before = {r.id for r in store.list_runs(1000)}
    proc = world.start(*args, log_name=log_name)
    run_id = wait_for(lambda: newest_run_id(store, not_in=before), 60, "the run to be created", proc=proc)
    return run_id, proc


def _finish(world: World, proc: subprocess.Popen, log_name: str, timeout: float = 240) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise AssertionError(f"console did not finish in {timeout:.0f}s:\n{world.output(log_name)[-3000:]}")


def _job_dirs(world: World, instance_id: str) -> list[Path]:
    return sorted((instance_root(world.state_dir, instance_id) / ".rc-jobs").glob("train-*"))


def _ledger(world: World, instance_id: str) -> dict:
    return json.loads((instance_root(world.state_dir, instance_id) / "rc" / "artifacts" / "ledger.json").read_text())


@pytest.fixture(scope="module")
def completed_run(world: World) -> str:
    """A run of the small checklist that went through upload (the kill test's, else a fresh one)."""
    if "completed" not in world.runs:
        run_id, proc = _run_to_end(world, "run", "--checklist", str(world.checklist), "--new", log_name="plain")
        assert _finish(world, proc, "plain") == 0, world.output("plain")[-3000:]
        world.runs["completed"] = run_id
    return world.runs["completed"]


def test_killed_runner_in_every_step_resumes_to_completion_without_a_second_instance(world: World) -> None:
    rng = random.Random(20261123)
    store = world.store()
    run_id, proc = _run_to_end(world, "run", "--checklist", str(world.checklist), "--new", log_name="kill-0")
    killed_mid: set[tuple[str, int]] = set()  # (step, attempt) found RUNNING right after a kill
    killed_after: list[str] = []  # steps already finished when first seen (too fast to catch)
    for i, step in enumerate(STEPS):
        log_name = f"kill-{i}"
        # A step left RUNNING by the previous kill is stale until the new process starts it again.
        record = store.get_step(run_id, step)
        stale = record.attempt if (step, record.attempt) in killed_mid else None

        def started() -> str | None:
            rec = store.get_step(run_id, step)
            if rec.state == "running" and (stale is None or rec.attempt > stale):
                return "running"
            return rec.state if rec.state == "succeeded" else None

        try:
            seen = wait_for(started, 180, f"{step} to run", proc=proc)
        except AssertionError as exc:
            kill_group(proc)
            raise AssertionError(f"{exc}\n{world.output(log_name)[-3000:]}") from None
        if seen == "running":
            time.sleep(rng.uniform(0.0, KILL_WAIT_CAP_S.get(step, 1.5)))
        else:
            killed_after.append(step)
        kill_group(proc)
        assert step_state(store, run_id, step) in ("running", "succeeded"), world.output(log_name)[-3000:]
        killed_mid |= {(s.name, s.attempt) for s in store.steps(run_id) if s.state == "running"}
        proc = world.start("resume", run_id, log_name=f"kill-{i + 1}")
    last = f"kill-{len(STEPS)}"
    assert _finish(world, proc, last) == 0, world.output(last)[-3000:]

    # Every step succeeded, in one run.
    assert {s.name: s.state for s in store.steps(run_id)} == {name: "succeeded" for name in STEPS}
    assert store.get_run(run_id).status == "succeeded"
    # The long steps were killed while they worked, not merely between steps.
    assert set(LONG_STEPS) <= {name for name, _ in killed_mid}, (sorted(killed_mid), killed_after)
    # Exactly one instance was ever tagged with the run, and it is terminated.
    instances = instances_of_run(world.state_dir, run_id)
    assert len(instances) == 1, [(i["InstanceId"], i["State"]["Name"]) for i in instances]
    assert instances[0]["State"]["Name"] == "terminated"
    assert store.instances(run_id=run_id, active_only=True) == []
    # The detached training ran once: one job, one attempt in the scheduler's ledger.
    iid = instances[0]["InstanceId"]
    assert [p.name for p in _job_dirs(world, iid)] == [f"train-{run_id}"]
    assert _ledger(world, iid)["symbols"]["ETH-USD"]["attempts"] == 1
    # Only complete, verified model folders; nothing half-written anywhere in the data dir.
    folders = model_folders(world.models_dir)
    assert folders, f"no model folder in {world.models_dir}"
    assert [p for f in folders for p in verify_model_folder(f)] == []
    assert half_written_files(world.models_dir) == []
    assert half_written_files(world.state_dir / "downloads") == []
    # Every data file under its final name is whole (atomic writes: never half a file).
    for parquet in world.data_dir.rglob("*.parquet"):
        if parquet.is_file() and not parquet.name.startswith("."):
            pq.read_metadata(parquet)
    world.runs["completed"] = run_id
    leftovers = half_written_files(world.data_dir)
    if leftovers:
        # A SIGKILL inside an atomic write leaves its hidden temporary file behind: never
        # presented as complete, but never cleaned up either (reported; see the module doc).
        pytest.xfail("kill -9 during an atomic write left hidden temporary files that nothing cleans up: "
                     + ", ".join(str(p.relative_to(world.data_dir)) for p in leftovers))
    print(f"killed mid-step: {sorted(killed_mid)}; first seen finished (too fast): {killed_after}")


def test_ssh_drop_during_sync_and_training_loses_no_log_lines(world: World) -> None:
    store = world.store()
    run_id, proc = _run_to_end(world, "run", "--checklist", str(world.checklist), "--new", log_name="drop")
    try:
        wait_for(lambda: step_state(store, run_id, "sync") == "running", 120, "sync to run", proc=proc)
        port = int(store.step_outputs(run_id, "launch")["port"])
        sync_drops = 0
        while step_state(store, run_id, "sync") == "running":
            sync_drops += _drop_ssh(port)
            time.sleep(0.2)
        train_log = world.state_dir / "runs" / run_id / "06-train.log"
        # Drop only once the job is being followed (the first progress line is in the log).
        wait_for(lambda: train_log.exists() and epoch_lines(train_log.read_text()), 120,
                 "the first training line", proc=proc)
        iid = store.step_outputs(run_id, "launch")["instance_id"]
        exit_file = _job_dirs(world, iid)[0] / "exit"
        train_drops = 0
        while step_state(store, run_id, "train") == "running" and not exit_file.exists():
            train_drops += _drop_ssh(port)
            time.sleep(1.0)
    except BaseException:
        kill_group(proc)
        raise
    assert _finish(world, proc, "drop") == 0, world.output("drop")[-3000:]

    assert train_drops >= 2, "the training was too quick to drop its SSH connection twice"
    text = train_log.read_text()
    assert "SSH dropped; reconnected" in text, text[-2000:]
    train = store.get_step(run_id, "train")
    assert train.state == "succeeded" and train.attempt == 1, (train.state, train.attempt)
    sync = store.get_step(run_id, "sync")
    assert sync.state == "succeeded"
    if sync_drops:  # the sync step reconnects inside its attempt instead of only failing into a retry
        assert "reconnecting in" in (world.state_dir / "runs" / run_id / "05-sync.log").read_text()
    # The step log holds the job's log exactly: nothing missing, nothing twice, in order.
    job_log = (_job_dirs(world, iid)[0] / "log").read_text()
    assert epoch_lines(text) == epoch_lines(job_log)
    assert len(set(epoch_lines(text))) == len(epoch_lines(text))
    # The detached training went on: one job, started once.
    assert [p.name for p in _job_dirs(world, iid)] == [f"train-{run_id}"]
    assert _ledger(world, iid)["symbols"]["ETH-USD"]["attempts"] == 1
    assert len(instances_of_run(world.state_dir, run_id)) == 1
    print(f"dropped SSH {sync_drops} time(s) during sync (sync attempts: {store.get_step(run_id, 'sync').attempt}), "
          f"{train_drops} during training")


def _drop_ssh(port: int) -> int:
    """Abort every TCP connection to the sandbox host's SSH port (the console's side), as a
    network drop would; returns how many were cut."""
    done = subprocess.run(["ss", "-K", "-t", "dst", "127.0.0.1", "dport", "=", f":{port}"],
                          capture_output=True, text=True, timeout=10)
    return sum(1 for line in done.stdout.splitlines() if line.startswith("ESTAB"))


def test_spot_interruption_during_training_relaunches_and_resumes_from_the_checkpoint(world: World) -> None:
    from remote.sandbox.endpoints import SandboxEndpoints

    checklist = small_retrain_checklist(world.root / "retrain-spot.toml", epochs=3, name="retrain-spot")
    store = world.store()
    run_id, proc = _run_to_end(world, "run", "--checklist", str(checklist), "--new", log_name="spot")
    most_live = 0
    try:
        train_log = world.state_dir / "runs" / run_id / "06-train.log"
        wait_for(lambda: train_log.exists() and any('"event": "epoch"' in line
                                                     for line in epoch_lines(train_log.read_text())),
                 180, "the first epoch line", proc=proc)
        first = store.step_outputs(run_id, "launch")["instance_id"]
        SandboxEndpoints.read(world.state_dir).interrupt_spot(first)
        # Until the run ends: never two live instances of the run at once.
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            most_live = max(most_live, len(live_instances_of_run(world.state_dir, run_id)))
            time.sleep(0.25)
    except BaseException:
        kill_group(proc)
        raise
    code = _finish(world, proc, "spot")
    out = world.output("spot")
    instances = instances_of_run(world.state_dir, run_id)
    assert code == 0, out[-3000:]
    assert {s.name: s.state for s in store.steps(run_id)} == {name: "succeeded" for name in STEPS}
    # A second instance was launched; at most one ran at any time; all are terminated now.
    assert len(instances) == 2 and all(i["State"]["Name"] == "terminated" for i in instances), \
        [(i["InstanceId"], i["State"]["Name"]) for i in instances]
    assert most_live <= 1, most_live
    assert store.instances(run_id=run_id, active_only=True) == []
    replacement = store.step_outputs(run_id, "launch")["instance_id"]
    assert {i["InstanceId"] for i in instances} == {first, replacement} and replacement != first
    kinds = [e.kind for e in store.events(run_id)]
    assert "instance.lost" in kinds and kinds.count("instance.replaced") == 1, kinds
    # The replacement resumed from a checkpoint kept off the lost host (epoch > 0), and ran
    # the remaining epochs only: epoch 1 was trained once, the last epoch is the third.
    text = train_log.read_text()
    starts = [json.loads(line) for line in epoch_lines(text) if '"event": "start"' in line]
    assert len(starts) == 2 and starts[0]["resumed_from"] == 0 and starts[-1]["resumed_from"] >= 1, starts
    epochs = [json.loads(line)["epoch"] for line in epoch_lines(text) if '"event": "epoch"' in line]
    assert epochs[-1] == 3 and epochs.count(1) == 1, epochs
    job_log = (_job_dirs(world, replacement)[0] / "log").read_text()
    assert [json.loads(l)["resumed_from"] for l in epoch_lines(job_log) if '"event": "start"' in l] == \
        [starts[-1]["resumed_from"]]
    # The checkpoints in S3 are whole: each pointer names an object with the recorded sha256.
    assert checkpoint_problems(world.state_dir, run_id, ["ETH-USD"]) == []
    # Nothing half-written anywhere: models, downloads, the run's own staging.
    folders = model_folders(world.models_dir)
    assert folders and [p for f in folders for p in verify_model_folder(f)] == []
    for root in (world.models_dir, world.state_dir / "downloads", world.state_dir / "runs" / run_id):
        assert half_written_files(root) == [], root


def test_corrupted_artifact_in_s3_is_refused_on_download(world: World, completed_run: str, tmp_path: Path) -> None:
    from console.resources import SANDBOX_BUCKET

    s3 = s3_client(world.state_dir)
    version = json.loads(s3.get_object(Bucket=SANDBOX_BUCKET, Key="models/latest.json")["Body"].read())["version"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=SANDBOX_BUCKET, Prefix=f"models/{version}/")["Contents"]]
    key = next(k for k in keys if k.endswith("model.pt"))
    head = s3.head_object(Bucket=SANDBOX_BUCKET, Key=key)
    body = bytearray(s3.get_object(Bucket=SANDBOX_BUCKET, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # one flipped byte; the object keeps its sha256 metadata
    s3.put_object(Bucket=SANDBOX_BUCKET, Key=key, Body=bytes(body), Metadata=head.get("Metadata", {}))

    # The console keeps verified downloads under <state>/downloads and reuses them: this
    # operator has not downloaded the version yet, so the damaged object must be read.
    shutil.rmtree(world.state_dir / "downloads" / version, ignore_errors=True)
    dest = tmp_path / "models"
    got = world.console("models", "download", version, "--to", str(dest))
    lines = [line for line in got.stderr.splitlines() if line.strip()]
    assert got.returncode == 1, (got.returncode, got.stdout, got.stderr)
    assert len(lines) == 1 and "Traceback" not in got.stderr + got.stdout, got.stderr
    assert "sha256" in lines[0].lower() or "checksum" in lines[0].lower(), lines[0]
    assert tree_snapshot(dest) == {}

    before = tree_snapshot(world.models_dir)
    run = world.console("run", "--checklist", str(world.checklist), "--new", "--only", "download")
    assert run.returncode == 1, (run.returncode, run.stdout[-2000:], run.stderr)
    assert "Traceback" not in run.stdout + run.stderr
    run_id = newest_run_id(world.store())
    step = world.store().get_step(run_id, "download")
    assert step.state == "failed" and "\n" not in step.summary
    assert "sha256" in step.summary.lower() or "checksum" in step.summary.lower(), step.summary
    assert tree_snapshot(world.models_dir) == before
    assert half_written_files(world.models_dir) == [] and half_written_files(world.state_dir / "downloads") == []


def test_moto_unreachable_for_a_while_gives_clear_errors_and_loses_nothing(world: World) -> None:
    """Runs last: a restarted sandbox is an empty cloud."""
    store = world.store()
    checklist = str(world.checklist)

    def only(step: str, *extra: str) -> subprocess.CompletedProcess[str]:
        done = world.console("run", "--checklist", checklist, "--only", step, *extra)
        assert done.returncode == 0, (step, done.stdout[-2000:], done.stderr)
        return done

    only("fetch", "--new")
    run_id = newest_run_id(store)
    for step in ("features", "verify-counts"):
        assert f"resuming run {run_id}" in only(step).stdout
    # The sandbox goes away between steps; the next step that needs it brings it back.
    first_pid = lifecycle.status(world.state_dir).pid
    assert lifecycle.down(world.state_dir)
    world.runs.clear()  # their instances and uploaded versions went with the old daemon
    assert not lifecycle.status(world.state_dir).running
    for step in ("launch", "sync", "train", "upload", "terminate"):
        assert f"resuming run {run_id}" in only(step).stdout
    assert lifecycle.status(world.state_dir).pid not in (None, first_pid)
    assert all(store.get_step(run_id, s).state == "succeeded" for s in STEPS[:8])

    # Down again before download: moto keeps S3 in memory, so the uploaded version is gone
    # with it. The honest outcome is a clear one-line failure and an untouched models dir.
    before = tree_snapshot(world.models_dir)
    assert lifecycle.down(world.state_dir)
    resumed = world.console("resume", run_id)
    assert resumed.returncode in (1, 2), (resumed.returncode, resumed.stdout[-2000:], resumed.stderr)
    assert "Traceback" not in resumed.stdout + resumed.stderr
    step = store.get_step(run_id, "download")
    assert step.state == "failed" and "\n" not in step.summary and step.summary, step.summary
    assert tree_snapshot(world.models_dir) == before
    assert store.get_run(run_id).status == "failed"
