"""Consoles started at the same instant on one state dir: one run, one driver, one instance."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from console.settings import load_settings
from console.state import StateStore

RACERS = 4

# Each racer registers a stand-in for `launch` (it records one "instance" per process that runs
# it; its plan takes a moment, as a plan reading a slow disk would, which widens the window
# between "nothing to resume" and "run created"), says it is ready, then waits for the starting
# gun, so every racer reaches "resume or create?" within the same few milliseconds.
RACER = """
import os, sys, time
from console.checklist.step import Step, StepResult, register
from console.cli import main

instances, ready, gun = sys.argv[1:4]

@register
class RaceLaunch(Step):
    name = "race-launch"
    def plan(self, ctx):
        time.sleep(0.3)
        return "launch one instance"
    def run(self, ctx):
        with open(instances, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(1.0)
        return StepResult.ok("launched")

open(os.path.join(ready, str(os.getpid())), "w").close()
while not os.path.exists(gun):
    time.sleep(0.001)
main(sys.argv[4:])
"""


def test_consoles_started_together_make_one_run_and_launch_one_instance(tmp_path: Path) -> None:
    checklist = tmp_path / "race.toml"
    checklist.write_text('[checklist]\nname = "race"\n[defaults]\nretries = 0\n[[steps]]\nname = "race-launch"\n')
    state, instances, ready, gun = tmp_path / "state", tmp_path / "instances", tmp_path / "ready", tmp_path / "go"
    ready.mkdir()
    argv = ["run", "--checklist", str(checklist), "--state-dir", str(state), "--yes"]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(instances), str(ready), str(gun), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RACERS)
    ]
    deadline = time.monotonic() + 60
    while len(list(ready.iterdir())) < RACERS and time.monotonic() < deadline:
        time.sleep(0.05)
    gun.touch()
    results = [(p.wait(timeout=120), *p.communicate()) for p in racers]

    launched = instances.read_text().splitlines()
    assert len(launched) == 1, (launched, results)
    store = StateStore.open(load_settings(flags={"state_dir": str(state)}).settings.state_dir)
    assert len(store.list_runs(100)) == 1
    assert sorted(code for code, _, _ in results) == [0] + [2] * (RACERS - 1), results
    refused = [err for code, _, err in results if code == 2]
    assert all("already being driven" in err and "Traceback" not in err for err in refused), refused


def test_new_supersedes_the_unfinished_run_so_only_one_is_ever_unfinished(tmp_path: Path) -> None:
    from console.checklist.engine import Engine, RunLock, run_dir
    from console.errors import RunLocked
    from console.steps import load_checklist

    checklist = tmp_path / "c.toml"
    checklist.write_text('[checklist]\nname = "c"\n[[steps]]\nname = "w"\nstep = "wait"\n[steps.params]\nseconds = 1\n')
    settings = load_settings(flags={"state_dir": str(tmp_path / "state")}).settings
    engine = Engine(settings, StateStore.open(settings.state_dir))
    spec = load_checklist(str(checklist))
    _, first, lock = engine.claim_run(spec)
    try:  # while the first run is driven, --new is refused rather than making a second unfinished run
        try:
            engine.claim_run(spec, new=True)
            raise AssertionError("--new took a run that another console drives")
        except RunLocked:
            pass
    finally:
        lock.__exit__(None, None, None)
    _, second, lock = engine.claim_run(spec, new=True)
    lock.__exit__(None, None, None)
    assert second != first
    assert engine.store.get_run(first).status == "superseded"
    assert engine.store.latest_unfinished_run("c").id == second
    assert not RunLock.is_held(run_dir(settings, first))
