"""A sandbox daemon never outlives its purpose: it leaves when its state dir or pid file goes,
SIGTERM always stops it, `down` escalates to SIGKILL, and `ensure_up` replaces a hung one.

Every test runs a real daemon (moto, an SSH host with a real user-data process) in its own
state dir. Waits are generous upper bounds, never the thing measured.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from remote.processes import pid_alive
from remote.providers.base import LaunchSpec
from remote.sandbox.endpoints import SandboxEndpoints, SandboxPaths
from remote.sandbox.lifecycle import down, ensure_up, status

pytestmark = pytest.mark.slow  # each test starts its own daemon


def _wait(predicate, within_s: float = 30.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _sleeper(endpoints: SandboxEndpoints, keys: Path) -> int:
    """Launch an instance whose user-data leaves a process running; its pid."""
    instance = endpoints.ec2_provider(keys).launch(LaunchSpec(
        run_id="faults", owner="t", ssh_cidr="127.0.0.1/32",
        user_data="#!/bin/sh\nsleep 300 >/dev/null 2>&1 &\necho $! > sleeper.pid\n")).instance
    pid_file = endpoints.ssh_endpoint(instance.id).root_dir / "sleeper.pid"
    assert _wait(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 20)
    return int(pid_file.read_text())


@pytest.fixture
def daemon(tmp_path):
    """A running daemon in this test's own state dir; whatever the test did, it is gone after."""
    state_dir = tmp_path / "state"
    started: list[int] = []

    def start(**kwargs) -> SandboxEndpoints:
        endpoints = ensure_up(state_dir, **kwargs)
        started.append(endpoints.pid)
        return endpoints

    yield state_dir, start
    for pid in started:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if state_dir.exists():
        down(state_dir, grace_s=1.0)


@pytest.mark.parametrize("loss", ["state dir deleted", "pid file names another daemon"])
def test_daemon_leaves_by_itself_when_its_pid_file_is_lost(daemon, tmp_path, loss):
    state_dir, start = daemon
    endpoints = start()
    sleeper = _sleeper(endpoints, tmp_path / "keys")
    paths = SandboxPaths.under(state_dir)
    if loss == "state dir deleted":
        shutil.rmtree(state_dir)
    else:
        paths.pid_file.write_text(f"{os.getpid()}\n")  # as a newer daemon would have
    assert _wait(lambda: not pid_alive(endpoints.pid)), "the daemon kept running without its pid file"
    assert _wait(lambda: not pid_alive(sleeper), 10), "its host's process outlived it"
    if loss != "state dir deleted":
        # The newer daemon's pid file is not the old one's to remove.
        assert paths.pid_file.read_text().strip() == str(os.getpid())


@pytest.mark.parametrize("signals", [1, 2])
def test_sigterm_stops_the_daemon_and_its_hosts(daemon, tmp_path, signals):
    state_dir, start = daemon
    endpoints = start()
    sleeper = _sleeper(endpoints, tmp_path / "keys")
    paths = SandboxPaths.under(state_dir)
    for _ in range(signals):  # a second SIGTERM skips the clean shutdown: still everything ends
        os.kill(endpoints.pid, signal.SIGTERM)
    assert _wait(lambda: not pid_alive(endpoints.pid)), "SIGTERM did not stop the daemon"
    assert _wait(lambda: not pid_alive(sleeper), 10)
    assert not paths.pid_file.exists() and not paths.endpoints_file.exists()
    assert status(state_dir).running is False


def test_down_escalates_to_sigkill_when_the_daemon_ignores_sigterm(daemon, tmp_path):
    state_dir, start = daemon
    endpoints = start()
    sleeper = _sleeper(endpoints, tmp_path / "keys")
    os.kill(endpoints.pid, signal.SIGSTOP)  # a stopped process acts on nothing but SIGKILL
    assert down(state_dir, grace_s=1.0) is True
    assert not pid_alive(endpoints.pid)
    assert _wait(lambda: not pid_alive(sleeper), 10), "the killed daemon's host process was left behind"
    paths = SandboxPaths.under(state_dir)
    assert not paths.pid_file.exists() and not paths.endpoints_file.exists()


def test_ensure_up_replaces_a_daemon_that_is_alive_but_hung(daemon):
    state_dir, start = daemon
    hung = start()
    os.kill(hung.pid, signal.SIGSTOP)
    fresh = start(unhealthy_after_s=1.0, grace_s=1.0)
    assert fresh.pid != hung.pid and fresh.healthy()
    assert not pid_alive(hung.pid)
    assert status(state_dir).pid == fresh.pid
    assert down(state_dir, grace_s=5.0) is True and not pid_alive(fresh.pid)


def test_a_stale_pid_file_naming_another_program_is_never_signalled(tmp_path):
    import subprocess
    import sys

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        paths = SandboxPaths.under(tmp_path / "state")
        paths.root.mkdir(parents=True)
        paths.pid_file.write_text(f"{bystander.pid}\n")
        assert down(tmp_path / "state", grace_s=1.0) is False
        assert bystander.poll() is None, "down signalled a process that is not the sandbox daemon"
    finally:
        bystander.kill()
        bystander.wait()
