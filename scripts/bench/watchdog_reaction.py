"""Benchmark: the watchdog's reaction time and its CPU use while idle, on the real sandbox.

Reaction time is measured from the moment a rule's condition is met to the moment the
provider reports the instance ``terminated`` (target: at most one interval plus 5 s):

- heartbeat: a run beats once and falls silent; the condition is met ``heartbeat_timeout_s``
  after that beat;
- orphan: an instance tagged as ours whose run the state store does not know; the
  condition is met when the launch returns.

Idle CPU is the background watchdog process's CPU time over a quiet window while it
watches one healthy instance (its run keeps beating), as a share of one core (target: < 1 %).

Run by hand::

    .venv/bin/python scripts/bench/watchdog_reaction.py [--interval 5] [--trials 3] [--idle-window 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=5.0, help="watchdog interval, s")
    parser.add_argument("--heartbeat-timeout", type=float, default=5.0, help="heartbeat timeout, s")
    parser.add_argument("--trials", type=int, default=3, help="trials per rule")
    parser.add_argument("--idle-window", type=float, default=60.0, help="idle CPU window, s")
    parser.add_argument("--idle-interval", type=float, default=15.0, help="interval for the idle CPU window, s")
    args = parser.parse_args()

    import psutil

    from console.settings import load_settings
    from console.state import StateStore
    from console.watchdog import start_background, stop_background, watchdog_status
    from remote.deadman import deadman_user_data
    from remote.providers.base import LaunchSpec
    from remote.sandbox.lifecycle import down, ensure_up

    work = Path(tempfile.mkdtemp(prefix="wd-bench-"))
    state_dir = work / "state"
    os.environ["HOME"] = str(work)
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ["PYTHONPATH"] = str(ROOT)

    def settings_for(interval: float):
        os.environ["RC_WATCHDOG__INTERVAL_S"] = str(interval)
        os.environ["RC_WATCHDOG__HEARTBEAT_TIMEOUT_S"] = str(args.heartbeat_timeout)
        return load_settings(flags={"state_dir": str(state_dir), "profile": "sandbox"}).settings

    endpoints = ensure_up(state_dir)
    provider = endpoints.ec2_provider(state_dir / "keys")
    store = StateStore.open(state_dir)
    # No dead-man interference: the instances' own switch is set far beyond the bench.
    user_data = deadman_user_data(max_runtime_s=7200, heartbeat_timeout_s=7200)
    counter = iter(range(10_000))
    owner = settings_for(args.interval).cloud.owner  # the watchdog judges only its owner's instances

    def launch(run_id: str) -> str:
        spec = LaunchSpec(run_id=run_id, owner=owner, ssh_cidr="127.0.0.1/32", instance_type="g4dn.xlarge",
                          user_data=user_data)
        return provider.launch(spec).instance.id

    def wait_terminated(instance_id: str, limit_s: float = 120.0) -> float:
        start = time.monotonic()
        while time.monotonic() - start < limit_s:
            if provider.describe(instance_id).state == "terminated":
                return time.time()
            time.sleep(0.05)
        raise SystemExit(f"{instance_id} was not terminated within {limit_s:.0f}s")

    results: dict[str, list[float]] = {"heartbeat": [], "orphan": []}
    try:
        settings = settings_for(args.interval)
        pid = start_background(settings)
        print(f"watchdog pid {pid}, interval {args.interval:g}s, heartbeat timeout {args.heartbeat_timeout:g}s")
        for trial in range(args.trials):
            # A random phase against the watchdog's passes, so the figures cover the worst case too.
            time.sleep(random.uniform(0, args.interval))
            run_id = f"bench-hb-{next(counter)}"
            store.create_run(run_id, checklist="bench", checklist_path="bench", profile="sandbox", params={},
                             steps=[("launch", "launch", "launch")])
            store.set_run_status(run_id, "running")
            store.heartbeat(run_id)
            iid = launch(run_id)
            store.heartbeat(run_id)  # the last beat: the condition is met heartbeat_timeout later
            met_at = store.get_run(run_id).heartbeat_at + args.heartbeat_timeout
            done = wait_terminated(iid)
            results["heartbeat"].append(done - met_at)
            print(f"heartbeat trial {trial + 1}: {done - met_at:.2f}s from condition to confirmed termination")

            time.sleep(random.uniform(0, args.interval))
            iid = launch(f"bench-orphan-{next(counter)}")
            met_at = time.time()
            done = wait_terminated(iid)
            results["orphan"].append(done - met_at)
            print(f"orphan trial {trial + 1}: {done - met_at:.2f}s from launch to confirmed termination")
        stop_background(settings)

        # Idle CPU: the default-style interval, one healthy instance to watch.
        settings = settings_for(args.idle_interval)
        os.environ["RC_WATCHDOG__HEARTBEAT_TIMEOUT_S"] = "600"
        settings = load_settings(flags={"state_dir": str(state_dir), "profile": "sandbox"}).settings
        run_id = f"bench-idle-{next(counter)}"
        store.create_run(run_id, checklist="bench", checklist_path="bench", profile="sandbox", params={},
                         steps=[("launch", "launch", "launch")])
        store.set_run_status(run_id, "running")
        store.heartbeat(run_id)
        healthy = launch(run_id)
        pid = start_background(settings)
        proc = psutil.Process(pid)
        time.sleep(max(3.0, args.idle_interval / 2))  # past startup and the first pass
        before = proc.cpu_times()
        started = time.monotonic()
        while time.monotonic() - started < args.idle_window:
            store.heartbeat(run_id)
            time.sleep(1.0)
        after = proc.cpu_times()
        elapsed = time.monotonic() - started
        cpu = (after.user + after.system) - (before.user + before.system)
        idle_pct = 100.0 * cpu / elapsed
        status = watchdog_status(settings)
        still = provider.describe(healthy).state
        stop_background(settings)
        provider.terminate(healthy, timeout_s=60)
    finally:
        down(state_dir)

    summary = {
        "interval_s": args.interval,
        "heartbeat_timeout_s": args.heartbeat_timeout,
        "target_s": args.interval + 5.0,
        "heartbeat_reaction_s": {"max": max(results["heartbeat"]), "median": statistics.median(results["heartbeat"])},
        "orphan_reaction_s": {"max": max(results["orphan"]), "median": statistics.median(results["orphan"])},
        "idle_interval_s": args.idle_interval,
        "idle_window_s": round(elapsed, 1),
        "idle_cpu_pct_of_one_core": round(idle_pct, 3),
        "healthy_instance_left_running": still == "running",
        "last_pass_took_s": (status.last_pass or {}).get("took_s"),
    }
    print(json.dumps(summary, indent=2))
    worst = max(summary["heartbeat_reaction_s"]["max"], summary["orphan_reaction_s"]["max"])
    ok = worst <= summary["target_s"] and idle_pct < 1.0 and still == "running"
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
