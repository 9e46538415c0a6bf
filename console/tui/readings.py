"""Hardware readings for the GPU pane: the instance's GPU when there is one, or this host.

A reading is never invented. Sources, in order:

1. a GPU reading of the run's instance, from ``metrics.gpu`` events in the state store
   (see `console.tui.figures.GPU_EVENT_KINDS`) or from `remote.metrics` when it has
   landed and the caller wires it in as a `ReadingSource`;
2. where there is no GPU (the sandbox profile, or no instance), this host's real CPU
   and memory, labelled as such;
3. otherwise the pane says there is no reading yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class Reading:
    """One sample for the GPU pane."""

    kind: str
    """``gpu`` (the instance's GPU), ``cpu`` (the instance has no GPU: its CPU and memory), or
    ``host`` (this machine's CPU and memory: there is no GPU here)."""
    util_pct: float | None = None
    """GPU utilisation, or CPU utilisation for a host reading."""
    mem_pct: float | None = None
    mem_used_mib: float | None = None
    mem_total_mib: float | None = None
    temp_c: float | None = None
    power_w: float | None = None


ReadingSource = Callable[[], "Reading | None"]
"""Returns the latest reading or None; called from a worker thread, may block briefly."""


def host_reading() -> Reading:
    """This machine's CPU use since the last call and its memory use (real figures, via psutil)."""
    import psutil  # loaded in the readings thread, after the first frame

    memory = psutil.virtual_memory()
    return Reading(
        "host",
        util_pct=psutil.cpu_percent(interval=None),
        mem_pct=memory.percent,
        mem_used_mib=(memory.total - memory.available) / 2**20,
        mem_total_mib=memory.total / 2**20,
    )


def gpu_reading_from_event(data: Mapping[str, Any]) -> Reading:
    """A reading of the instance from a ``host.reading`` / ``metrics.gpu`` event's data."""

    def num(*keys: str) -> float | None:
        for key in keys:
            try:
                return float(data[key])
            except (KeyError, TypeError, ValueError):
                continue
        return None

    used, total = num("mem_used_mib", "gpu_mem_used_mib"), num("mem_total_mib", "gpu_mem_total_mib")
    if data.get("kind") == "cpu":  # the instance has no GPU: its CPU, labelled as such
        return Reading(
            "cpu",
            util_pct=num("cpu_pct"),
            mem_pct=(100.0 * used / total) if used is not None and total else None,
            mem_used_mib=used,
            mem_total_mib=total,
        )
    return Reading(
        "gpu",
        util_pct=num("util_pct", "gpu_util_pct"),
        mem_pct=(100.0 * used / total) if used is not None and total else None,
        mem_used_mib=used,
        mem_total_mib=total,
        temp_c=num("temp_c", "gpu_temp_c"),
        power_w=num("power_w", "gpu_power_w"),
    )


def reading_from_remote(host: Any) -> Reading:
    """A `Reading` from `remote.metrics.HostReading` (first GPU), for a `ReadingSource` over SSH."""
    if host.kind == "gpu" and host.gpus:
        gpu = host.gpus[0]
        used, total = gpu.memory_used_mib, gpu.memory_total_mib
        return Reading(
            "gpu",
            util_pct=gpu.utilization_pct,
            mem_pct=(100.0 * used / total) if used is not None and total else None,
            mem_used_mib=used,
            mem_total_mib=total,
            temp_c=gpu.temperature_c,
            power_w=gpu.power_w,
        )
    used, total = host.memory_used_mib, host.memory_total_mib
    return Reading(
        "cpu",
        util_pct=host.cpu_pct,
        mem_pct=(100.0 * used / total) if used is not None and total else None,
        mem_used_mib=used,
        mem_total_mib=total,
    )


def reading_label(reading: Reading | None, *, sandbox: bool) -> str:
    """The pane's one-line caption for ``reading``."""
    if reading is None:
        return "no reading yet"
    if reading.kind in ("host", "cpu"):
        if reading.kind == "cpu":
            where = "no GPU on the instance"
        else:
            where = "sandbox: no GPU on this host" if sandbox else "no GPU on this host"
        return f"{where}: CPU {_pct(reading.util_pct)}, memory {_pct(reading.mem_pct)}"
    parts = [f"GPU {reading.util_pct:.0f}%" if reading.util_pct is not None else "GPU ?%"]
    if reading.mem_used_mib is not None and reading.mem_total_mib:
        parts.append(f"memory {reading.mem_used_mib / 1024:.1f}/{reading.mem_total_mib / 1024:.1f} GiB")
    if reading.temp_c is not None:
        parts.append(f"{reading.temp_c:.0f}°C")
    if reading.power_w is not None:
        parts.append(f"{reading.power_w:.0f} W")
    return ", ".join(parts)


def _pct(value: float | None) -> str:
    return f"{value:.0f}%" if value is not None else "unknown"
