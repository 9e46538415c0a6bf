"""`console train remote`: the train step by itself, through the real `console` executable.

The slow test drives a real sandbox (moto over HTTP, an SSH host per instance): a run of a
small checklist fetches, builds features, launches and syncs with the train step skipped,
then `console train remote` trains on that run's leased instance. A spot interruption
with ``max_relaunches = 0`` then shows the bound: the step fails in one line and no
second instance is launched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from console.state import StateStore
from remote.sandbox import lifecycle
from tests.e2e_support import World, console_env, epoch_lines, instances_of_run, newest_run_id, wait_for

CHECKLIST = """
[checklist]
name = "train-remote-cli"

[params]
symbols = ["ETH-USD"]
timeframes = ["1m", "5m", "15m", "1h"]
days = 3
epochs = 1
max_relaunches = 0

[defaults]
retries = 0
backoff_s = 0.3
timeout_s = 600

[[steps]]
name = "fetch"
[[steps]]
name = "features"
[[steps]]
name = "verify-counts"
[[steps]]
name = "launch"
[[steps]]
name = "sync"
[[steps]]
name = "train"
[[steps]]
name = "terminate"
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    checklist = tmp_path / "train-remote.toml"
    checklist.write_text(CHECKLIST)
    w = World(root=tmp_path, checklist=checklist, env=console_env(tmp_path / "home", tmp_path / "state"))
    try:
        yield w
    finally:
        lifecycle.down(w.state_dir)


def _one_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr + proc.stdout, (proc.stdout[-2000:], proc.stderr)
    return lines[0]


def test_train_remote_without_a_leased_instance_says_to_launch_and_sync_first(world: World) -> None:
    done = world.console("train", "remote")
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    line = _one_line(done)
    assert "no run has a leased instance to train on" in line and "--only launch" in line and "sync" in line
    assert not lifecycle.status(world.state_dir).running  # nothing was started to find that out


@pytest.mark.parametrize("args, needle", [
    (["--mode", "warp"], "--mode"),
    (["--epochs", "0"], "--epochs"),
    (["--max-concurrent", "many"], "neither a whole number from 1 to 64 nor auto"),
    (["--max-concurrent", "\u00b2"], "neither a whole number from 1 to 64 nor auto"),
    (["--symbols", "eth/usd;rm"], "symbol"),
    (["--run", "no-such-run"], "no run 'no-such-run'"),
])
def test_train_remote_refuses_bad_flags_in_one_line(world: World, args: list[str], needle: str) -> None:
    done = world.console("train", "remote", *args)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert needle in _one_line(done)


@pytest.mark.slow
def test_train_remote_trains_on_the_runs_leased_instance_and_never_relaunches_past_the_bound(world: World) -> None:
    from remote.sandbox.endpoints import SandboxEndpoints

    prepared = world.console("run", "--checklist", str(world.checklist), "--new", "--skip", "train",
                             "--skip", "terminate", timeout=300)
    assert prepared.returncode == 0, (prepared.stdout[-3000:], prepared.stderr)
    store = StateStore.open(world.state_dir)
    run_id = newest_run_id(store)
    instance_id = store.step_outputs(run_id, "launch")["instance_id"]

    trained = world.console("train", "remote", "--epochs", "1", "--mode", "sequential", timeout=300)
    assert trained.returncode == 0, (trained.stdout[-3000:], trained.stderr)
    assert f"training for run {run_id} on {instance_id}" in trained.stdout
    step = store.get_step(run_id, "train")
    assert step.state == "succeeded" and step.summary.startswith("trained 1 of 1 symbols"), step.summary
    log = (world.state_dir / "runs" / run_id / "06-train.log").read_text()
    assert "--mode sequential" in log
    assert [json.loads(l)["epoch"] for l in epoch_lines(log) if '"event": "epoch"' in l] == [1]

    # A symbol the instance was never given is refused before anything starts.
    refused = world.console("train", "remote", "--symbols", "BTC-USD")
    assert refused.returncode == 2 and "BTC-USD not synced" in _one_line(refused)

    # The host goes away; this checklist allows no replacement: one clear failure, no new instance.
    SandboxEndpoints.read(world.state_dir).interrupt_spot(instance_id, notice_s=0.2)
    wait_for(lambda: all(i["State"]["Name"] == "terminated" for i in instances_of_run(world.state_dir, run_id)),
             30, "the interrupted instance to be terminated")
    lost = world.console("train", "remote", "--force", timeout=120)
    assert lost.returncode == 1, (lost.returncode, lost.stdout[-3000:], lost.stderr)
    step = store.get_step(run_id, "train")
    assert step.state == "failed" and "\n" not in step.summary
    assert f"instance {instance_id} was lost during training" in step.summary and "after 0 replacement" in step.summary
    assert [i["InstanceId"] for i in instances_of_run(world.state_dir, run_id)] == [instance_id]
    assert "instance.lost" in [e.kind for e in store.events(run_id)]
