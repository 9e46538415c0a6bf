"""Host readings: CPU/memory over real SSH, GPU from nvidia-smi's CSV, nothing invented."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from remote.metrics import READ_SCRIPT, parse_gpu_csv, parse_reading, read_host
from remote.ssh import SSHRunner


def test_host_without_gpu_reports_cpu_and_memory_from_proc(target):
    with SSHRunner(target) as runner:
        reading = read_host(runner)
    assert reading.kind == "cpu" and reading.gpus == ()
    assert reading.sources == ("/proc/stat", "/proc/meminfo")
    assert 0.0 <= reading.cpu_pct <= 100.0
    assert 0 < reading.memory_used_mib < reading.memory_total_mib


def test_gpu_csv_is_parsed_and_na_is_none_not_zero():
    text = "0, NVIDIA H100 80GB HBM3, 87, 40211, 81559, 61, 412.33\n1, Tesla T4, [N/A], 10, 15360, 40, [N/A]\n"
    first, second = parse_gpu_csv(text)
    assert (first.utilization_pct, first.memory_used_mib, first.power_w) == (87.0, 40211.0, 412.33)
    assert second.utilization_pct is None and second.power_w is None and second.temperature_c == 40.0


@dataclass
class _Result:
    output: str


class _LocalRunner:
    """Runs the reading script on this machine with a stand-in nvidia-smi on PATH."""

    def __init__(self, bin_dir: Path) -> None:
        self.env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")

    def run(self, command, *, timeout_s=None, check=True):
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=self.env, timeout=timeout_s)
        return _Result(out.stdout)


def test_reading_script_uses_nvidia_smi_when_present(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '0, NVIDIA A10G, 55, 1000, 23028, 48, 120.5'\n")
    fake.chmod(0o755)
    reading = read_host(_LocalRunner(tmp_path))
    assert reading.kind == "gpu" and reading.gpus[0].name == "NVIDIA A10G"
    assert reading.sources[0] == "nvidia-smi"


def test_failing_nvidia_smi_means_cpu_reading(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the driver'\nexit 9\n")
    fake.chmod(0o755)
    reading = read_host(_LocalRunner(tmp_path))
    assert reading.kind == "cpu" and reading.gpus == ()


def test_missing_proc_gives_none_not_a_number():
    reading = parse_reading("#gpu\n#gpu-rc 127\n#stat\n#stat\n#mem\n#end\n")
    assert reading.kind == "cpu"
    assert reading.cpu_pct is None and reading.memory_total_mib is None and reading.sources == ()
    assert "nvidia-smi" in READ_SCRIPT
