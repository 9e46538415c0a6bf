"""The dead-man switch script, run for real with bash and a recording `shutdown` on PATH."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from remote.deadman import deadman_user_data, heartbeat_touch_command


def _fake_shutdown(bin_dir: Path, record: Path) -> None:
    bin_dir.mkdir()
    script = bin_dir / "shutdown"
    script.write_text(f'#!/bin/bash\necho "$@" >> {record}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def _boot(tmp_path: Path, user_data: str) -> tuple[Path, Path]:
    """Run user-data like a host at boot: bash, a fresh dead-man dir, our fake shutdown first on PATH."""
    record = tmp_path / "shutdown.calls"
    _fake_shutdown(tmp_path / "bin", record)
    deadman_dir = tmp_path / "deadman"
    script = tmp_path / "user-data.sh"
    script.write_text(user_data)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "RC_DEADMAN_DIR": str(deadman_dir), "HOME": str(tmp_path)}
    started = time.monotonic()
    subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, check=True, timeout=10)
    assert time.monotonic() - started < 5, "user-data must return at once (the watcher detaches)"
    return deadman_dir, record


@pytest.fixture
def stop_watchers():
    dirs: list[Path] = []
    yield dirs
    for d in dirs:
        pid_file = d / "deadman.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass


def _wait_for(path: Path, timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if path.exists() and path.read_text().strip():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def test_switch_shuts_down_when_heartbeat_goes_stale(tmp_path: Path, stop_watchers: list[Path]) -> None:
    data = deadman_user_data(max_runtime_s=600, heartbeat_timeout_s=2, check_every_s=0.2)
    deadman_dir, record = _boot(tmp_path, data)
    stop_watchers.append(deadman_dir)
    waited = _wait_for(record, timeout=8)
    assert waited is not None, (deadman_dir / "deadman.log").read_text()
    assert waited >= 0.9  # not at boot: the boot itself counts as a heartbeat
    assert record.read_text().startswith("-h now")
    assert "no heartbeat" in (deadman_dir / "deadman.log").read_text()


def test_touched_heartbeat_keeps_instance_until_max_runtime(tmp_path: Path, stop_watchers: list[Path]) -> None:
    data = deadman_user_data(max_runtime_s=3, heartbeat_timeout_s=2, check_every_s=0.2)
    deadman_dir, record = _boot(tmp_path, data)
    stop_watchers.append(deadman_dir)
    touch = heartbeat_touch_command(str(deadman_dir))
    start = time.monotonic()
    while time.monotonic() - start < 8 and not (record.exists() and record.read_text()):
        subprocess.run(["bash", "-c", touch], check=True)
        time.sleep(0.3)
    elapsed = time.monotonic() - start
    assert record.exists() and record.read_text().startswith("-h now")
    assert 1.5 <= elapsed <= 7
    assert "max runtime 3s reached" in (deadman_dir / "deadman.log").read_text()


def test_failed_shutdown_is_retried(tmp_path: Path, stop_watchers: list[Path]) -> None:
    record = tmp_path / "shutdown.calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Refuses the first call, accepts the second.
    (bin_dir / "shutdown").write_text(
        f'#!/bin/bash\necho "$@" >> {record}\n[ "$(wc -l < {record})" -ge 2 ]\n'
    )
    (bin_dir / "shutdown").chmod(0o755)
    deadman_dir = tmp_path / "deadman"
    script = tmp_path / "ud.sh"
    script.write_text(deadman_user_data(max_runtime_s=1, heartbeat_timeout_s=60, check_every_s=0.2))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RC_DEADMAN_DIR": str(deadman_dir)}
    subprocess.run(["bash", str(script)], env=env, check=True, timeout=10)
    stop_watchers.append(deadman_dir)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and (not record.exists() or len(record.read_text().splitlines()) < 2):
        time.sleep(0.05)
    assert len(record.read_text().splitlines()) == 2
    assert "shutdown failed; retrying" in (deadman_dir / "deadman.log").read_text()


def test_user_data_is_plain_bash_that_parses_and_never_delays_shutdown() -> None:
    data = deadman_user_data(max_runtime_s=4 * 3600, heartbeat_timeout_s=300, ssh_user="ubuntu")
    assert data.startswith("#!/bin/bash\n")
    subprocess.run(["bash", "-n"], input=data, text=True, check=True)
    assert "shutdown -h now" in data and "shutdown -h +" not in data
    assert " 14400 300 30 " in data


@pytest.mark.parametrize("kwargs", [
    {"max_runtime_s": 0, "heartbeat_timeout_s": 10},
    {"max_runtime_s": 10, "heartbeat_timeout_s": -1},
    {"max_runtime_s": 10, "heartbeat_timeout_s": 10, "ssh_user": "ubuntu; rm -rf /"},
])
def test_bad_parameters_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        deadman_user_data(**kwargs)


def test_touch_command_quotes_the_path(tmp_path: Path) -> None:
    target = tmp_path / "a b; rm -rf x"
    target.mkdir()
    subprocess.run(["bash", "-c", heartbeat_touch_command(str(target))], env={"PATH": "/usr/bin:/bin"}, check=True)
    assert (target / "heartbeat").exists()


def test_sandbox_hosts_keep_the_heartbeat_inside_their_root(tmp_path: Path, stop_watchers: list[Path]) -> None:
    root = tmp_path / "instance-root"
    root.mkdir()
    env = {"PATH": "/usr/bin:/bin", "RC_SANDBOX_ROOT": str(root)}
    script = tmp_path / "ud.sh"
    script.write_text(deadman_user_data(max_runtime_s=600, heartbeat_timeout_s=600))
    subprocess.run(["bash", str(script)], env=env, check=True, timeout=10)
    deadman_dir = root / "var/tmp/retrain-console"
    stop_watchers.append(deadman_dir)
    beat = deadman_dir / "heartbeat"
    assert beat.exists()
    os.utime(beat, (1, 1))
    subprocess.run(["bash", "-c", heartbeat_touch_command()], env=env, check=True)
    assert beat.stat().st_mtime > 1
