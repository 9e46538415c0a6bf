"""How many training jobs one host runs at once when the operator asks for ``auto``.

On a host with NVIDIA GPUs the answer is sized to them. One job of the AWS profile's model
(2-layer LSTM, hidden 64, batch 512) keeps an H200 only 11-22 % busy: it is launch-bound.
Three such jobs at once kept it 52 % busy and finished in the time of one (measured for
issue 17), so `JOBS_PER_GPU` jobs per GPU reach about 80 %. Memory bounds it as well:
`JOB_MEMORY_MIB` per job (the CUDA context, the symbol's windows on the device,
activations) out of what each GPU has free when the schedule starts. Jobs are spread over
the GPUs in turn, never more on one than its memory holds (``CUDA_VISIBLE_DEVICES``, with
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA numbers the GPUs as ``nvidia-smi`` does; a
``CUDA_VISIBLE_DEVICES`` the operator set is left alone).

Without a GPU (``nvidia-smi`` absent or failing) it is `CPU_JOBS`, the hybrid mode's
usual two, whose jobs share the cores (`training.scheduler` divides OpenMP's threads).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Sequence

JOBS_PER_GPU = 5
JOB_MEMORY_MIB = 2048
CPU_JOBS = 2
QUERY = ["nvidia-smi", "--query-gpu=index,memory.total,memory.used", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class Gpu:
    index: str
    total_mib: int
    used_mib: int

    @property
    def slots(self) -> int:
        """Jobs this GPU takes: `JOBS_PER_GPU`, fewer when its free memory holds fewer."""
        return max(0, min(JOBS_PER_GPU, (self.total_mib - self.used_mib) // JOB_MEMORY_MIB))


@dataclass(frozen=True)
class Sizing:
    """How many jobs at once, on which GPUs (none: CPU), and why, in one line."""

    jobs: int
    devices: tuple[str, ...]
    """One entry per job slot, GPU indices taken in turn while each has room: job ``i`` of a
    batch runs on ``devices[i]``, so no GPU gets more jobs than its memory holds."""
    why: str


def find_gpus(timeout_s: float = 15.0) -> list[Gpu]:
    """This host's GPUs as ``nvidia-smi`` lists them; none when it is absent, fails or says nothing usable."""
    try:
        out = subprocess.run(QUERY, capture_output=True, text=True, timeout=timeout_s, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            continue  # "[N/A]" or a warning line: not a reading to size anything on
        gpus.append(Gpu(parts[0], int(parts[1]), int(parts[2])))
    return gpus


def auto_sizing(symbols: int, gpus: Sequence[Gpu]) -> Sizing:
    """Jobs at once for ``symbols`` symbols on a host with ``gpus`` (see the module docstring)."""
    usable = [g for g in gpus if g.slots > 0]
    if not usable:
        jobs = max(1, min(CPU_JOBS, symbols))
        why = "no GPU with room found" if gpus else "no GPU found"
        return Sizing(jobs, (), f"{why}: {jobs} at once on the CPU")
    slots = sum(g.slots for g in usable)
    jobs = max(1, min(slots, symbols))
    left = {g.index: g.slots for g in usable}
    devices: list[str] = []
    while len(devices) < jobs:
        for g in usable:
            if left[g.index] and len(devices) < jobs:
                devices.append(g.index)
                left[g.index] -= 1
    per_gpu = ", ".join(f"GPU {g.index} {g.slots} ({(g.total_mib - g.used_mib) // 1024} GiB free)" for g in usable)
    return Sizing(jobs, tuple(devices), f"{jobs} at once: room for {slots} on {per_gpu}")
