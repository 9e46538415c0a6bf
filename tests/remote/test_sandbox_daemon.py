"""The sandbox daemon's lifecycle: up is idempotent and cheap, down stops it, status tells."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.request

import pytest

from remote.errors import SandboxNotRunning
from remote.providers.base import LaunchSpec
from remote.sandbox.endpoints import SandboxEndpoints, SandboxPaths
from remote.sandbox.lifecycle import down, ensure_up, require_up, status


@pytest.mark.slow
def test_up_is_idempotent_and_down_stops_everything(tmp_path):
    state_dir = tmp_path / "state"
    paths = SandboxPaths.under(state_dir)
    # A stale pid file from a crashed daemon must not fool ensure_up.
    paths.root.mkdir(parents=True)
    paths.pid_file.write_text("999999\n")
    results: list[SandboxEndpoints] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_up(state_dir))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    try:
        assert len(results) == 2 and results[0].pid == results[1].pid  # one daemon, not two
        endpoints = results[0]
        started = time.monotonic()
        again = ensure_up(state_dir)
        assert again.pid == endpoints.pid and time.monotonic() - started < 0.5
        with urllib.request.urlopen(f"{endpoints.moto_url}/_sandbox/health", timeout=5) as resp:
            assert json.loads(resp.read())["pid"] == endpoints.pid
        if endpoints.market_url:  # None only while remote.sandbox.market is missing
            host, port = endpoints.market_url.rsplit("/", 1)[-1].rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=5).close()
        report = status(state_dir)
        assert report.running and report.pid == endpoints.pid and report.instances == ()
        assert not json.loads(paths.endpoints_file.read_text())["hosts"]
        assert "SECRET" not in paths.endpoints_file.read_text().upper()
        # A daemon killed outright leaves its hosts' processes behind; the next one ends them.
        inst = endpoints.ec2_provider(tmp_path / "keys").launch(LaunchSpec(
            run_id="orphans", owner="t", ssh_cidr="127.0.0.1/32",
            user_data="#!/bin/sh\nsleep 300 >/dev/null 2>&1 &\necho $! > sleeper.pid\n")).instance
        pid_file = endpoints.ssh_endpoint(inst.id).root_dir / "sleeper.pid"
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        sleeper = int(pid_file.read_text())
        os.kill(endpoints.pid, signal.SIGKILL)
        endpoints = ensure_up(state_dir)
        assert endpoints.pid != results[0].pid and not _alive(sleeper)
    finally:
        assert down(state_dir) is True
    assert not _alive(endpoints.pid)
    assert not paths.endpoints_file.exists() and not paths.pid_file.exists()
    assert status(state_dir).running is False
    assert down(state_dir) is False
    with pytest.raises(SandboxNotRunning) as caught:
        require_up(state_dir)
    assert caught.value.exit_code == 2 and "console sandbox up" in str(caught.value)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False
