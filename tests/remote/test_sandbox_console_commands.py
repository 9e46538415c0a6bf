"""`console sandbox ...`, `console instance ...` and the launch/terminate steps, run as real processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from remote.sandbox.lifecycle import down

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def console_env(tmp_path_factory: pytest.TempPathFactory):
    """An environment for `console` processes: own state dir and HOME, no AWS_* variables."""
    state = tmp_path_factory.mktemp("console-state")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RC_", "SSH_"))}
    env.update(HOME=str(tmp_path_factory.mktemp("console-home")), RC_STATE_DIR=str(state), RC_PROFILE="sandbox",
               PYTHONPATH=str(ROOT), RC_WATCHDOG__AUTOSTART="false")
    yield env
    down(state)


def console(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console", *args], env=env, cwd=env["HOME"], text=True,
                          capture_output=True, timeout=timeout)


def test_sandbox_up_status_and_instance_commands(console_env):
    up = console(console_env, "sandbox", "up", "--json")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["moto_url"].startswith("http://127.0.0.1:")

    prices = console(console_env, "instance", "prices", "--json")
    assert prices.returncode == 0, prices.stderr
    rows = json.loads(prices.stdout)
    assert rows[0]["source"] == "sandbox table" and rows[0]["spot_usd_per_hour"] == pytest.approx(0.1578)

    launch = console(console_env, "instance", "launch", "--run-id", "cli-demo", "--json")
    assert launch.returncode == 0, launch.stderr
    launched = json.loads(launch.stdout)
    again = json.loads(console(console_env, "instance", "launch", "--run-id", "cli-demo", "--json").stdout)
    assert again["reused"] and again["instance_id"] == launched["instance_id"]
    assert launched["host"] == "127.0.0.1" and launched["host_key"].startswith("ssh-ed25519 ")

    status = json.loads(console(console_env, "sandbox", "status", "--json").stdout)
    assert status["running"] and launched["instance_id"] in status["instances"]
    listed = json.loads(console(console_env, "instance", "list", "--json").stdout)
    assert [i["id"] for i in listed if i["run_id"] == "cli-demo"] == [launched["instance_id"]]

    shell = console(console_env, "instance", "ssh", launched["instance_id"], "--", "sh", "-c", "echo $RC_SANDBOX_INSTANCE_ID")
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.strip() == launched["instance_id"]  # the pinned system ssh reached that very host

    done = console(console_env, "instance", "terminate", launched["instance_id"])
    assert done.returncode == 0 and "terminated (confirmed)" in done.stdout
    assert launched["instance_id"] not in json.loads(console(console_env, "sandbox", "status", "--json").stdout)["instances"]


@pytest.mark.parametrize("args, message", [
    (("instance", "terminate", "i-1;reboot"), "is not an instance id"),
    (("instance", "terminate"), "name an instance id"),
    (("instance", "prices", "--type", "g9.mega"), "unknown instance type"),
    (("instance", "prices", "--type", "$(id)"), "is not an instance type"),
])
def test_bad_input_is_one_line_with_exit_code_2(console_env, args, message):
    result = console(console_env, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_launch_and_terminate_steps_record_the_instance_and_confirm(console_env, tmp_path):
    checklist = tmp_path / "cloud.toml"
    checklist.write_text(
        '[checklist]\nname = "cloud"\ndescription = "launch then terminate"\n'
        '[params]\ninstance_type = "g5.xlarge"\nalt_instance_type = "g4dn.xlarge"\n'
        'budget_usd = 2.0\nmax_runtime_hours = 1.0\n'
        '[defaults]\nretries = 0\ntimeout_s = 120\n'
        '[[steps]]\nname = "launch"\n[[steps]]\nname = "terminate"\n')
    result = console(console_env, "run", "--checklist", str(checklist), "--json", "--yes", "--new")
    assert result.returncode == 0, result.stderr + result.stdout
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    run_id = next(e["run_id"] for e in events if e.get("run_id"))
    db = sqlite3.connect(next(Path(console_env["RC_STATE_DIR"]).glob("*.db")))
    rows = db.execute("SELECT id, run_id, state, instance_type, zone FROM instances WHERE run_id = ?",
                      (run_id,)).fetchall()
    assert len(rows) == 1 and rows[0][2] == "terminated" and rows[0][3:] == ("g5.xlarge", "us-east-1b")
    rate = db.execute("SELECT spot_usd_per_h, source FROM costs WHERE instance_id = ?", (rows[0][0],)).fetchone()
    assert rate == (pytest.approx(0.2968), "sandbox table")
    status = json.loads(console(console_env, "sandbox", "status", "--json").stdout)
    assert rows[0][0] not in status["instances"]


def test_sandbox_runs_the_market_the_settings_ask_for_and_refuses_to_switch_silently(console_env):
    up = console(console_env, "sandbox", "up", "--json")
    assert up.returncode == 0, up.stderr
    assert (json.loads(up.stdout)["market_mode"], json.loads(up.stdout)["market_seed"]) == ("structured", 7)

    other = console({**console_env, "RC_SANDBOX__MARKET_MODE": "random_walk"}, "sandbox", "up")
    lines = [line for line in other.stderr.splitlines() if line.strip()]
    assert other.returncode == 2 and len(lines) == 1 and "Traceback" not in other.stderr, other.stderr
    assert "structured market" in lines[0] and "random_walk" in lines[0] and "sandbox down" in lines[0]


def test_sandbox_runs_as_many_batch_children_at_once_as_the_settings_say(console_env, tmp_path):
    """The daemon holds no environment of ours, so the setting must reach it as a flag."""
    env = {**console_env, "RC_STATE_DIR": str(tmp_path / "state"), "RC_SANDBOX__BATCH_RUNNING": "5"}
    try:
        up = console(env, "sandbox", "up", "--json")
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["batch_running"] == 5
        assert "5 children at once" in console(env, "sandbox", "status").stdout

        other = console({**env, "RC_SANDBOX__BATCH_RUNNING": "3"}, "sandbox", "up")
        lines = [line for line in other.stderr.splitlines() if line.strip()]
        assert other.returncode == 2 and len(lines) == 1 and "Traceback" not in other.stderr, other.stderr
        assert "5 Batch children at once" in lines[0] and "3 at once" in lines[0] and "sandbox down" in lines[0]
    finally:
        down(tmp_path / "state")
