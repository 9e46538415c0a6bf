"""A manual `console instance launch` belongs to a manual run the watchdog knows, and starts it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from console.settings import load_settings
from console.state import RunStatus, StateStore
from console.watchdog import stop_background, watchdog_status
from remote.sandbox.lifecycle import down
from tests.console.cli import console


def test_a_manual_launch_starts_the_watchdog_which_leaves_it_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {"RC_WATCHDOG__AUTOSTART": "true", "RC_WATCHDOG__INTERVAL_S": "0.5"}
    settings = load_settings(flags={"state_dir": str(state)}, environ=env).settings
    try:
        proc = console("instance", "launch", "--json", "--state-dir", str(state), env=env, timeout=240)
        assert proc.returncode == 0, proc.stderr
        launched = json.loads(proc.stdout)
        assert watchdog_status(settings).running, launched.get("watchdog")
        # Passes later (an orphan went within one), the watchdog has judged it and left it alone.
        judged_after, deadline = time.time() + 1.5, time.monotonic() + 60
        while (watchdog_status(settings).last_pass or {}).get("last_pass_at", 0) < judged_after:
            assert time.monotonic() < deadline, "the watchdog made no pass"
            time.sleep(0.2)
        last = watchdog_status(settings).last_pass or {}
        assert last.get("seen", 0) >= 1 and launched["instance_id"] not in (last.get("terminated") or []), last
        store = StateStore.open(state)
        run = store.get_run(launched["run_id"])
        assert run is not None and run.status is RunStatus.MANUAL and run.params["budget_usd"] > 0
        assert [i.state in ("pending", "running") for i in store.instances(run_id=run.id)] == [True]
        assert store.latest_unfinished_run() is None  # `console resume` never picks a manual run
    finally:
        if watchdog_status(settings).running:
            stop_background(settings)
        down(state)
