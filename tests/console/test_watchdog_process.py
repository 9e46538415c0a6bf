"""The watchdog as a process: one per state dir, start/stop/status/once, terminating in the background."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console.settings import Settings
from console.state import StateStore
from console.watchdog import (
    WatchdogLock, WatchdogNotRunning, WatchdogRunning, ensure_watchdog_running, stop_background, watchdog_dir,
    watchdog_status,
)
from tests.console.test_watchdog_support import (  # noqa: F401  (fixtures)
    _isolated_environment, creds, ec2, launch, moto_url, receiver, state_of,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def child_env(monkeypatch, moto_url, creds, tmp_path):
    """What a `console watchdog run` child inherits: moto as the cloud, seconds for intervals."""
    monkeypatch.setenv("RC_AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("RC_WATCHDOG__INTERVAL_S", "0.5")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds.secret_access_key)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path, child_env) -> Settings:
    s = Settings(state_dir=tmp_path / "state", aws_endpoint_url=os.environ["RC_AWS_ENDPOINT_URL"],
                 watchdog={"interval_s": 0.5})
    yield s
    if WatchdogLock.is_held(watchdog_dir(s)):
        stop_background(s)


def _console(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_background_watchdog_terminates_an_orphan_and_stops_cleanly(settings, ec2, receiver, monkeypatch):
    token = f"{secrets.randbelow(10**9) + 10**8}:" + secrets.token_urlsafe(27)[:35]
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)  # Telegram is unreachable here: its failure gets logged
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "424242")
    monkeypatch.setenv("RC_NOTIFY_URLS", json.dumps([receiver.url]))
    pid = ensure_watchdog_running(settings)
    assert pid > 0 and watchdog_status(settings).running
    assert ensure_watchdog_running(settings) == pid  # one per state dir
    orphan = launch(ec2, run_id="nobody-knows")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and state_of(ec2, orphan) != "terminated":
        time.sleep(0.2)
    assert state_of(ec2, orphan) == "terminated"
    store = StateStore.open(settings.state_dir)
    reason = ""
    while time.monotonic() < deadline and not reason:  # recorded just after the confirmation
        reason = next((r.terminate_reason for r in store.instances() if r.id == orphan), "")
        time.sleep(0.1)
    assert "orphan" in reason
    status = watchdog_status(settings)
    while time.monotonic() < deadline and status.last_pass is None:  # written when the pass ends,
        time.sleep(0.1)  # after the Batch and SageMaker jobs are policed too
        status = watchdog_status(settings)
    assert status.last_pass is not None and status.last_pass["pid"] == pid
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and f"instance {orphan} terminated" not in receiver.titles():
        time.sleep(0.1)
    assert f"instance {orphan} terminated" in receiver.titles()
    assert stop_background(settings) == pid
    assert not watchdog_status(settings).running
    logs = "".join(p.read_text() for p in watchdog_dir(settings).glob("watchdog.*") if p.suffix in (".log", ".out"))
    assert "Telegram" in logs  # the failure was logged...
    assert token not in logs and token.split(":")[1] not in logs  # ...without the token
    with pytest.raises(WatchdogNotRunning):
        stop_background(settings)


def test_second_watchdog_for_the_same_state_dir_is_refused(settings, tmp_path):
    with WatchdogLock(watchdog_dir(settings)):
        with pytest.raises(WatchdogRunning):
            with WatchdogLock(watchdog_dir(settings)):
                pass
        assert WatchdogLock.is_held(watchdog_dir(settings))
    assert not WatchdogLock.is_held(watchdog_dir(settings))


@pytest.mark.slow
def test_cli_start_status_once_stop(settings, ec2):
    state = str(settings.state_dir)
    orphan = launch(ec2)
    once = _console("watchdog", "once", "--state-dir", state)
    assert once.returncode == 0, once.stderr
    assert f"{orphan} (orphan)" in once.stdout and "-> terminated" in once.stdout
    assert state_of(ec2, orphan) == "terminated"

    started = _console("watchdog", "start", "--state-dir", state)
    assert started.returncode == 0, started.stderr
    again = _console("watchdog", "start", "--state-dir", state)
    assert again.returncode == 2 and "already running" in again.stderr
    assert "a watchdog is running" in _console("watchdog", "once", "--state-dir", state).stdout
    time.sleep(1.5)
    status = json.loads(_console("watchdog", "status", "--json", "--state-dir", state).stdout)
    assert status["running"] and status["last_pass"]["error"] is None
    stopped = _console("watchdog", "stop", "--state-dir", state)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert "not running" in _console("watchdog", "status", "--state-dir", state).stdout
