"""Where the watchdog's idle rule gets GPU utilisation from.

Fresh ``host.reading`` events first (the TUI's panes write them while it watches a run),
else a reading over SSH (`remote.metrics.read_host`) at most once per ``every_s`` per
instance. A host without nvidia-smi (every sandbox host) gives None, which the idle rule
never takes for idleness; so does a host that cannot be reached.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from console.redact import redact
from console.resources import Resources
from console.state import StateStore

if TYPE_CHECKING:  # pragma: no cover
    from remote.providers.base import Instance

log = logging.getLogger("console.watchdog")


@dataclass(frozen=True)
class GpuReading:
    """GPU utilisation of an instance at a moment (None: the host has no GPU reading)."""

    taken_at: float
    gpu_util_pct: float | None


Readings = Callable[["Instance"], GpuReading | None]
"""Where the idle rule gets GPU utilisation from."""


def store_readings(store: StateStore, *, max_age_s: float) -> Readings:
    """Readings from ``host.reading`` events (data: instance_id, gpu_util_pct) no older than max_age_s."""

    def read(instance: "Instance") -> GpuReading | None:
        latest = None
        for event in store.events(instance.run_id) if instance.run_id else store.events():
            if event.kind == "host.reading" and event.data.get("instance_id") == instance.id:
                latest = event
        if latest is None or time.time() - latest.ts > max_age_s:
            return None
        value = latest.data.get("gpu_util_pct")
        return GpuReading(latest.ts, float(value) if value is not None else None)

    return read


def ssh_readings(resources: Resources, store: StateStore, *, every_s: float) -> Readings:
    """Readings taken over SSH, at most once per ``every_s`` per instance.

    The highest utilisation over the host's GPUs counts.
    """
    from console.instances import Instances

    taken: dict[str, GpuReading] = {}
    instances = Instances(resources, store)

    def read(instance: "Instance") -> GpuReading | None:
        cached = taken.get(instance.id)
        if cached is not None and time.time() - cached.taken_at < every_s:
            return cached
        from remote.metrics import read_host

        try:
            with instances.runner(instance.id) as runner:
                host = read_host(runner, timeout_s=20.0)
        except Exception as exc:  # noqa: BLE001 - unreachable is not idle; and do not retry it every pass
            log.info("%s", redact(f"no reading from {instance.id}: {exc}"))
            taken[instance.id] = GpuReading(time.time(), None)
            return None
        utils = [g.utilization_pct for g in host.gpus if g.utilization_pct is not None]
        reading = GpuReading(host.taken_at, max(utils) if host.kind == "gpu" and utils else None)
        taken[instance.id] = reading
        return reading

    return read


def default_readings(resources: Resources, store: StateStore) -> Readings:
    """Fresh ``host.reading`` events first, else SSH."""
    w = resources.settings.watchdog
    from_store = store_readings(store, max_age_s=max(60.0, 3 * w.interval_s))
    over_ssh = ssh_readings(resources, store, every_s=max(w.interval_s, min(300.0, w.idle_timeout_s / 10)))

    def read(instance: "Instance") -> GpuReading | None:
        return from_store(instance) or over_ssh(instance)

    return read
