"""`watchdog status` shows recent terminations with their reasons; `console cost` says why each
instance ended; a budget under a dollar is not rounded to $0.00."""

from __future__ import annotations

import json
import time
from pathlib import Path

from console.cost import BudgetBreach, record_rate
from console.state import StateStore
from tests.console.cli import console
from tests.remote.sandbox_fixtures import sandbox  # noqa: F401


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


def test_an_instance_the_provider_confirms_gone_stops_costing_at_the_next_heartbeat(tmp_path, sandbox) -> None:
    import os

    from console.cost import ledger
    from console.instances import Instances
    from console.resources import Resources
    from console.settings import Settings
    from remote.providers.base import LaunchSpec

    settings = Settings(state_dir=sandbox.state_dir)
    store = StateStore.open(tmp_path / "state")
    provider = sandbox.ec2_provider(sandbox.state_dir / "keys")
    run_id = f"gone-{os.getpid()}-{time.monotonic_ns()}"
    store.create_run(run_id, checklist="t", checklist_path="t", profile="sandbox", params={}, steps=[])
    inst = provider.launch(LaunchSpec(run_id=run_id, owner="t", ssh_cidr="127.0.0.1/32",
                                      instance_type="g4dn.xlarge")).instance
    instances = Instances(Resources(settings), store, provider=provider)
    instances.record(inst, run_id)
    record_rate(store, inst.id, run_id, 0.30, 1.0, "sandbox")
    provider.terminate(inst.id, timeout_s=60)  # gone behind the console's back

    assert instances.touch_heartbeats(run_id) == []
    [record] = store.instances(run_id=run_id)
    assert record.state == "terminated" and record.terminate_reason.startswith("gone:")
    [now_line] = ledger(store, run_id=run_id)
    [hour_later] = ledger(store, run_id=run_id, now=time.time() + 3600)
    assert not now_line.live and hour_later.cost_usd == now_line.cost_usd  # no longer accruing
