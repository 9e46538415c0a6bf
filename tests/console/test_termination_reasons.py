"""`watchdog status` shows recent terminations with their reasons; `console cost` says why each
instance ended; a budget under a dollar is not rounded to $0.00."""

from __future__ import annotations

import json
import time
from pathlib import Path

from console.cost import BudgetBreach, record_rate
from console.state import StateStore
from tests.console.cli import console


def test_watchdog_status_and_cost_say_why_each_instance_ended(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    store.create_run("r1", checklist="c", checklist_path="c", profile="sandbox", params={}, steps=[])
    store.upsert_instance("i-0abc", run_id="r1", provider="ec2", state="running", instance_type="g5.xlarge",
                          zone="us-east-1a", launched_at=time.time() - 600, data={})
    record_rate(store, "i-0abc", "r1", 0.30, 1.0, "sandbox")
    reason = BudgetBreach("run", "r1", 0.0012, 0.001, ("i-0abc",)).reason
    store.mark_instance_terminated("i-0abc", f"watchdog: {reason}")
    store.close()

    status = console("watchdog", "status", "--state-dir", str(tmp_path))
    assert status.returncode == 0, status.stderr
    assert "i-0abc (r1) ended 0 min ago: watchdog: run r1 budget reached: $0.0012 of $0.001" in status.stdout
    cost = console("cost", "--json", "--state-dir", str(tmp_path))
    assert cost.returncode == 0, cost.stderr
    [line] = json.loads(cost.stdout)["lines"]
    assert line["ended_because"] == f"watchdog: {reason}"
