"""Keep each instance's dead-man switch fed while the console drives its run.

Every launched instance terminates itself when its heartbeat file goes stale
(`remote.deadman`). While a run is driven, the engine calls this hook at a third of the
heartbeat timeout; it touches the file on each of the run's live instances over SSH, so a
live console never lets its own instance die and a dead one (or a closed laptop) always does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.checklist.engine import HEARTBEAT_HOOKS

if TYPE_CHECKING:  # pragma: no cover
    from console.settings import Settings
    from console.state import StateStore


def touch_instances(settings: "Settings", store: "StateStore", run_id: str) -> None:
    from console.watchdog import touch_instance_heartbeats

    touch_instance_heartbeats(settings, store, run_id)


HEARTBEAT_HOOKS.append(touch_instances)
