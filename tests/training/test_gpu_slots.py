"""``--max-concurrent auto``: the scheduler sizes its batches to the host's GPUs, read from a
real ``nvidia-smi`` subprocess (here a stand-in script on PATH that prints what the real one
prints), and falls back to two jobs on a host without one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from training.errors import BadTrainingConfig
from training.gpu_slots import CPU_JOBS, JOBS_PER_GPU
from training.scheduler import build_parser, device_for, plan_from_args

SYMBOLS = "BTC-USD,ETH-USD,SOL-USD,ADA-USD,XRP-USD,DOGE-USD,LTC-USD,DOT-USD"


def _host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str | None, code: int = 0) -> None:
    """A PATH whose ``nvidia-smi`` prints ``output`` and exits ``code`` (None: no nvidia-smi at all)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if output is None:  # only the empty folder: not even a real nvidia-smi of a GPU CI host
        monkeypatch.setenv("PATH", str(bin_dir))
        return
    tool = bin_dir / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {code}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")


def _plan(symbols: str, concurrency: str):
    return plan_from_args(build_parser().parse_args(["--symbols", symbols, "--max-concurrent", concurrency]))


def test_auto_runs_several_jobs_on_one_big_gpu_but_never_more_than_the_symbols(tmp_path, monkeypatch) -> None:
    _host(tmp_path, monkeypatch, "0, 143771, 512")
    plan = _plan(SYMBOLS, "auto")
    assert plan.max_concurrent == JOBS_PER_GPU and set(plan.devices) == {"0"}
    assert plan.batches()[0] == tuple(SYMBOLS.split(","))[:JOBS_PER_GPU]
    assert f"room for {JOBS_PER_GPU} on GPU 0" in plan.sizing
    assert _plan("BTC-USD,ETH-USD,SOL-USD", "auto").max_concurrent == 3


def test_auto_counts_each_gpus_free_memory_and_spreads_the_jobs_over_the_gpus(tmp_path, monkeypatch) -> None:
    # GPU 0 is nearly full (room for one 2 GiB job); GPU 2 reports no figures and is left out.
    _host(tmp_path, monkeypatch, "0, 24576, 22000\n1, 24576, 0\n2, [N/A], [N/A]")
    plan = _plan(SYMBOLS, "auto")
    assert plan.max_concurrent == 1 + JOBS_PER_GPU
    assert "GPU 0 1 (2 GiB free), GPU 1 5 (24 GiB free)" in plan.sizing
    first, second = plan.batches()
    on_gpu = [device_for(plan, s) for s in first]
    assert on_gpu.count("0") == 1 and on_gpu.count("1") == JOBS_PER_GPU  # never more than a GPU holds
    assert [device_for(plan, s) for s in second] == ["0", "1"][: len(second)]


@pytest.mark.parametrize(
    ("output", "code", "why"),
    [(None, 0, "no GPU found"), ("NVIDIA-SMI has failed: no driver", 9, "no GPU found"),
     ("0, 24576, 24000", 0, "no GPU with room found")],
)  # fmt: skip
def test_auto_without_a_usable_gpu_runs_the_usual_two_on_the_cpu(tmp_path, monkeypatch, output, code, why) -> None:
    _host(tmp_path, monkeypatch, output, code)
    plan = _plan(SYMBOLS, "auto")
    assert plan.max_concurrent == CPU_JOBS and plan.devices == ()
    assert plan.sizing.startswith(why)


def test_a_number_is_taken_as_given_and_anything_else_is_refused_in_one_line(tmp_path, monkeypatch) -> None:
    _host(tmp_path, monkeypatch, "0, 143771, 512")
    plan = _plan(SYMBOLS, "3")
    assert plan.max_concurrent == 3 and plan.devices == () and plan.sizing == ""
    for bad in ("0", "many", "-2"):
        with pytest.raises(BadTrainingConfig, match="--max-concurrent must be a whole number >= 1 or auto"):
            _plan(SYMBOLS, bad)
