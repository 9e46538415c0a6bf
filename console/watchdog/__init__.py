"""The watchdog: no instance outlives its purpose, even when the console that launched it dies.

A separate process (`console watchdog run|start|stop|status|once`), one per state
directory. Three ideas, one module each:

- `rules`: when an instance has outlived its purpose (orphan, run ended, budget, max
  runtime, lost heartbeat, idle GPU): pure decisions over what a pass found;
- `passes`: one pass (`Watchdog.run_pass`): list what is ours, record it and its price,
  judge it by the rules, end what must go through the instances service (confirmed,
  retried every pass until it is), and `Watchdog.serve` to loop;
- `process`: the process itself: its lock, pid, status file, start and stop;

and `readings`, where the idle rule gets GPU utilisation from. Every instance also carries
its own dead-man switch in user-data, fed by the console that drives its run
(`console.instances.Instances.touch_heartbeats`).
"""

from __future__ import annotations

from console.watchdog.passes import PRICE_REFRESH_S, PassReport, Watchdog
from console.watchdog.process import (
    WatchdogLock,
    WatchdogNotRunning,
    WatchdogRunning,
    WatchdogStatus,
    ensure_watchdog_running,
    read_pid,
    run_foreground,
    run_once,
    start_background,
    stop_background,
    watchdog_dir,
    watchdog_status,
)
from console.watchdog.readings import GpuReading, Readings, default_readings, ssh_readings, store_readings
from console.watchdog.rules import IDLE_GPU_PCT, UPLOADED_EVENTS, Verdict, models_pending_upload

__all__ = [
    "IDLE_GPU_PCT",
    "PRICE_REFRESH_S",
    "UPLOADED_EVENTS",
    "GpuReading",
    "PassReport",
    "Readings",
    "Verdict",
    "Watchdog",
    "WatchdogLock",
    "WatchdogNotRunning",
    "WatchdogRunning",
    "WatchdogStatus",
    "default_readings",
    "ensure_watchdog_running",
    "models_pending_upload",
    "read_pid",
    "run_foreground",
    "run_once",
    "ssh_readings",
    "start_background",
    "stop_background",
    "store_readings",
    "watchdog_dir",
    "watchdog_status",
]
