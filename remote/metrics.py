"""Host readings: GPU utilisation, memory, temperature and power, or CPU and memory.

One remote command collects everything in a single round trip: ``nvidia-smi``'s CSV
query when the host has it, and two ``/proc/stat`` samples plus ``/proc/meminfo``. A
reading says which kind it is (``gpu`` or ``cpu``) and where it came from; a value the
host did not report (``[N/A]``, a missing file) is ``None`` -- never a made-up number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Protocol

GPU_QUERY = "index,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw"
"""The nvidia-smi fields read, in order (CSV, no header, no units)."""

_CPU_SAMPLE_S = 0.25

READ_SCRIPT = (
    "echo '#gpu'; "
    f"nvidia-smi --query-gpu={GPU_QUERY} --format=csv,noheader,nounits 2>/dev/null; "
    'echo "#gpu-rc $?"; '
    "echo '#stat'; head -n1 /proc/stat 2>/dev/null; "
    f"sleep {_CPU_SAMPLE_S}; "
    "echo '#stat'; head -n1 /proc/stat 2>/dev/null; "
    "echo '#mem'; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo 2>/dev/null; "
    "echo '#end'"
)
"""The fixed shell script that takes one reading (no outside value reaches it)."""


class CommandRunner(Protocol):
    """What `read_host` needs: the SSH runner's ``run`` (or a local stand-in)."""

    def run(self, command: str, *, timeout_s: float | None = None, check: bool = True): ...


@dataclass(frozen=True)
class GpuReading:
    """One GPU as nvidia-smi reported it; None where it said [N/A] or nothing."""

    index: int
    name: str
    utilization_pct: float | None
    memory_used_mib: float | None
    memory_total_mib: float | None
    temperature_c: float | None
    power_w: float | None


@dataclass(frozen=True)
class HostReading:
    """One reading of a host.

    ``kind`` is ``"gpu"`` when nvidia-smi answered with at least one GPU, else ``"cpu"``.
    CPU and memory come from /proc either way, when the host has /proc.
    """

    kind: Literal["gpu", "cpu"]
    taken_at: float
    """Unix time on the operator's machine when the reading came back."""
    gpus: tuple[GpuReading, ...]
    cpu_pct: float | None
    """Busy share of all CPUs over a 0.25 s window, 0-100."""
    memory_used_mib: float | None
    memory_total_mib: float | None
    sources: tuple[str, ...]
    """Where the numbers came from: "nvidia-smi", "/proc/stat", "/proc/meminfo"."""


def _number(text: str) -> float | None:
    text = text.strip()
    if not text or text.startswith("[") or text.upper() in ("N/A", "NA", "ERR!"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_gpu_csv(text: str) -> tuple[GpuReading, ...]:
    """Parse ``nvidia-smi --query-gpu=GPU_QUERY --format=csv,noheader,nounits`` output."""
    gpus = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 7 or not cells[0].isdigit():
            continue
        gpus.append(GpuReading(int(cells[0]), cells[1], *(_number(c) for c in cells[2:])))
    return tuple(gpus)


def _cpu_busy_pct(first: str, second: str) -> float | None:
    def fields(line: str) -> list[int] | None:
        parts = line.split()
        if len(parts) < 5 or parts[0] != "cpu":
            return None
        try:
            return [int(p) for p in parts[1:]]
        except ValueError:
            return None

    a, b = fields(first), fields(second)
    if a is None or b is None:
        return None
    # idle + iowait count as not busy (fields 4 and 5 of the cpu line).
    idle = lambda v: v[3] + (v[4] if len(v) > 4 else 0)  # noqa: E731
    total = sum(b) - sum(a)
    if total <= 0:
        return None
    return round(100.0 * (1 - (idle(b) - idle(a)) / total), 1)


def parse_reading(text: str, taken_at: float | None = None) -> HostReading:
    """Turn `READ_SCRIPT`'s output into a HostReading."""
    sections: dict[str, list[str]] = {}
    current = None
    gpu_rc = None
    for line in text.splitlines():
        if line.startswith("#gpu-rc "):
            gpu_rc = line.split()[1]
            current = None
        elif line.startswith("#"):
            current = line[1:].strip()
            sections.setdefault(current, [])
            if current == "stat":
                sections["stat"].append("\x00")  # sample separator
        elif current is not None:
            sections[current].append(line)
    gpus = parse_gpu_csv("\n".join(sections.get("gpu", []))) if gpu_rc == "0" else ()
    samples = "\n".join(sections.get("stat", [])).split("\x00")
    samples = [s.strip() for s in samples if s.strip()]
    cpu = _cpu_busy_pct(samples[0], samples[1]) if len(samples) == 2 else None
    mem: dict[str, float] = {}
    for line in sections.get("mem", []):
        name, _, rest = line.partition(":")
        value = _number(rest.replace("kB", ""))
        if value is not None:
            mem[name.strip()] = value / 1024.0
    total = mem.get("MemTotal")
    used = total - mem["MemAvailable"] if total is not None and "MemAvailable" in mem else None
    sources = (
        (("nvidia-smi",) if gpus else ())
        + (("/proc/stat",) if cpu is not None else ())
        + (("/proc/meminfo",) if total is not None else ())
    )
    return HostReading(
        kind="gpu" if gpus else "cpu",
        taken_at=time.time() if taken_at is None else taken_at,
        gpus=gpus,
        cpu_pct=cpu,
        memory_used_mib=round(used, 1) if used is not None else None,
        memory_total_mib=round(total, 1) if total is not None else None,
        sources=sources,
    )


def read_host(runner: CommandRunner, *, timeout_s: float = 20.0) -> HostReading:
    """Take one reading of the host behind ``runner`` (one SSH round trip, about 0.3 s)."""
    result = runner.run(READ_SCRIPT, timeout_s=timeout_s, check=False)
    return parse_reading(result.output)
