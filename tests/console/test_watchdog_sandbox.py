"""With the real sandbox: a `console run` killed with SIGKILL after launch, and the watchdog
terminating its instance within one heartbeat timeout plus one interval."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from console.settings import load_settings
from console.state import StateStore
from console.watchdog import ensure_watchdog_running, stop_background, watchdog_status
from remote.sandbox.lifecycle import down
from tests.console.test_watchdog_support import _isolated_environment  # noqa: F401
from tests.remote.sandbox_fixtures import sandbox  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
HEARTBEAT_TIMEOUT_S = 3.0
INTERVAL_S = 1.0

CHECKLIST = """
[checklist]
name = "launch-and-wait"
description = "launch a sandbox GPU, then wait (the console is killed meanwhile)"

[params]
instance_type = "g4dn.xlarge"
alt_instance_type = "g5.xlarge"
budget_usd = 5.0
max_runtime_hours = 1.0

[[steps]]
name = "launch"
retries = 0
timeout_s = 120

[[steps]]
name = "wait"
retries = 0
[steps.params]
seconds = 600
"""


class _HoldOffDeadman:
    """Touch every sandbox instance's heartbeat file, so its own dead-man switch (which the
    launch step arms with the same short timeout) stays out of what this test measures."""

    def __init__(self, state_dir: Path) -> None:
        self.roots = state_dir / "sandbox" / "instances"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            for beat in self.roots.glob("*/var/tmp/retrain-console/heartbeat"):
                try:
                    os.utime(beat)
                except OSError:
                    pass

    def __enter__(self) -> "_HoldOffDeadman":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(2)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_watchdog_terminates_the_instance_of_a_killed_console(tmp_path, monkeypatch):
    state_dir = tmp_path / "state"
    checklist = tmp_path / "launch-and-wait.toml"
    checklist.write_text(CHECKLIST)
    monkeypatch.setenv("RC_WATCHDOG__HEARTBEAT_TIMEOUT_S", str(HEARTBEAT_TIMEOUT_S))
    monkeypatch.setenv("RC_WATCHDOG__INTERVAL_S", str(INTERVAL_S))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.chdir(tmp_path)
    settings = load_settings(flags={"state_dir": str(state_dir), "profile": "sandbox"}).settings
    console = None
    try:
        with _HoldOffDeadman(state_dir):
            console = subprocess.Popen(
                [sys.executable, "-m", "console", "run", "--checklist", str(checklist), "--state-dir", str(state_dir),
                 "--profile", "sandbox", "--yes"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
            store = _wait_for_store(state_dir)
            instance_id, run_id = _wait_for_launch(store, console)
            assert ensure_watchdog_running(settings) > 0  # as `console run` does after a launch
            from console.resources import Resources

            provider = Resources(settings).provider(start_sandbox=False)
            time.sleep(HEARTBEAT_TIMEOUT_S + 2 * INTERVAL_S)
            assert provider.describe(instance_id).state == "running", "a live console's instance must be left alone"

            console.send_signal(signal.SIGKILL)
            console.wait(10)
            killed_at = time.monotonic()
            inst = provider.describe(instance_id)
            while inst.state != "terminated" and time.monotonic() - killed_at < 60:
                time.sleep(0.1)
                inst = provider.describe(instance_id)
            reaction = time.monotonic() - killed_at
        assert inst.state == "terminated"
        assert inst.state_reason != "Client.InstanceInitiatedShutdown", "the dead-man switch did it, not the watchdog"
        reason, deadline = "", time.monotonic() + 15
        while not reason and time.monotonic() < deadline:  # recorded right after the confirmation
            reason = next(r for r in store.instances() if r.id == instance_id).terminate_reason
            time.sleep(0.1)
        assert reason.startswith("watchdog (heartbeat)"), reason
        # The console beats every second; the watchdog notices within one interval of the timeout.
        # (Slack for confirming the termination on a loaded 2-core machine.)
        assert reaction <= HEARTBEAT_TIMEOUT_S + INTERVAL_S + 5.0, reaction
        assert store.get_run(run_id).status == "running"  # killed: nobody recorded an end
    finally:
        if console is not None and console.poll() is None:
            console.kill()
        if watchdog_status(settings).running:
            stop_background(settings)
        down(state_dir)


def _wait_for_store(state_dir: Path) -> StateStore:
    deadline = time.monotonic() + 60
    while not (state_dir / "state.db").exists():
        assert time.monotonic() < deadline, "console run never created its state store"
        time.sleep(0.1)
    return StateStore.open(state_dir)


def _wait_for_launch(store: StateStore, console: subprocess.Popen) -> tuple[str, str]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if console.poll() is not None:
            raise AssertionError(f"console run exited early: {console.stdout.read()}")
        for run in store.list_runs(5):
            step = store.get_step(run.id, "wait")
            if step is not None and step.state == "running":
                instances = store.instances(run_id=run.id, active_only=True)
                if instances:
                    return instances[0].id, run.id
        time.sleep(0.2)
    raise AssertionError("the launch step never finished")


@pytest.mark.slow
def test_idle_rule_reads_the_host_over_ssh_and_a_gpu_less_host_is_never_idle(tmp_path, sandbox, monkeypatch):
    from console.instances import Instances
    from console.resources import Resources
    from console.settings import Settings
    from console.watchdog import Watchdog, ssh_readings
    from remote.providers.base import LaunchSpec

    settings = Settings(state_dir=sandbox.state_dir, watchdog={"idle_timeout_s": 1.0, "interval_s": 1.0,
                                                               "heartbeat_timeout_s": 600.0})
    store = StateStore.open(tmp_path / "state")
    provider = sandbox.ec2_provider(sandbox.state_dir / "keys")
    run_id = f"idle-{os.getpid()}-{time.monotonic_ns()}"
    store.create_run(run_id, checklist="t", checklist_path="t", profile="sandbox", params={},
                     steps=[("launch", "launch", "launch")])
    store.set_run_status(run_id, "running")
    store.heartbeat(run_id)
    inst = provider.launch(LaunchSpec(run_id=run_id, owner="t", ssh_cidr="127.0.0.1/32",
                                      instance_type="g4dn.xlarge")).instance
    try:
        resources = Resources(settings)
        Instances(resources, store, provider=provider).record(inst, run_id)
        reading = ssh_readings(resources, store, every_s=60)(inst)
        assert reading is not None and time.time() - reading.taken_at < 60  # a real reading came back
        assert reading.gpu_util_pct is None  # the sandbox has no GPU: unknown, never "idle"
        # Only the idle rule could fire here (fresh heartbeat, runtime and budget fine): it must not.
        dog = Watchdog(resources, store, _OnlyThis(provider, inst.id), readings=ssh_readings(resources, store, every_s=0))
        dog.run_pass()
        dog.clock = lambda: time.time() + 5
        assert dog.run_pass().terminated == []
        assert provider.describe(inst.id).state == "running"
    finally:
        provider.terminate(inst.id, timeout_s=60)


class _OnlyThis:
    """The sandbox provider seen through a filter: other tests' instances share this sandbox."""

    def __init__(self, inner, instance_id: str) -> None:
        self.inner, self.instance_id, self.name = inner, instance_id, inner.name

    def list_managed(self):
        return [i for i in self.inner.list_managed() if i.id == self.instance_id]

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@pytest.mark.slow
def test_console_touches_keep_the_instance_and_stopping_them_ends_it(tmp_path, sandbox):
    from console.instances import Instances
    from console.resources import Resources
    from console.settings import Settings
    from remote.deadman import deadman_user_data
    from remote.providers.base import LaunchSpec

    settings = Settings(state_dir=sandbox.state_dir)
    store = StateStore.open(tmp_path / "state")
    provider = sandbox.ec2_provider(sandbox.state_dir / "keys")
    run_id = f"touch-{os.getpid()}-{time.monotonic_ns()}"
    store.create_run(run_id, checklist="t", checklist_path="t", profile="sandbox", params={},
                     steps=[("launch", "launch", "launch")])
    inst = provider.launch(LaunchSpec(
        run_id=run_id, owner="t", ssh_cidr="127.0.0.1/32", instance_type="g4dn.xlarge",
        user_data=deadman_user_data(max_runtime_s=600, heartbeat_timeout_s=4, check_every_s=0.2))).instance
    try:
        instances = Instances(Resources(settings), store, provider=provider)
        instances.record(inst, run_id)
        until = time.monotonic() + 8  # twice the heartbeat timeout, kept alive by the touches
        while time.monotonic() < until:
            assert instances.touch_heartbeats(run_id) == [inst.id]
            time.sleep(1.0)
        assert provider.describe(inst.id).state == "running"
        stopped = time.monotonic()
        state = provider.describe(inst.id)
        while state.state != "terminated" and time.monotonic() - stopped < 30:
            time.sleep(0.2)
            state = provider.describe(inst.id)
        assert state.state == "terminated" and state.state_reason == "Client.InstanceInitiatedShutdown"
    finally:
        if provider.describe(inst.id).state != "terminated":
            provider.terminate(inst.id, timeout_s=60)
