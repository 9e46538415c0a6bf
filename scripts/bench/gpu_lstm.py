"""LSTM training throughput with the data held on the GPU, and how busy the GPU is.

One self-contained command. It builds ``--windows`` windows' worth of random features
directly on the device (no host copy, no per-batch transfer), then runs one full training
epoch of our trainer (`EpochRunner`: batches gathered by index on the device, autocast
mixed precision, fused Adam) and one inference pass, and reports:

- training and inference samples (windows) per second;
- GPU busy share of wall time, two ways: ``nvidia-smi`` utilization sampled every
  ``--sample-ms`` during the epoch, and CUDA kernel time / wall time from
  ``torch.profiler`` over ``--profile-steps`` steps (one stream, so kernels never overlap).

Target: at least 80% busy. Without a GPU it runs a reduced CPU version (``--cpu-windows``)
and says "no GPU" first.

    python scripts/bench/gpu_lstm.py --windows 1000000 --out gpu_lstm.json

``gpu_lstm.py scheduler [...]`` is the other mode (`gpu_lstm_scheduler`): BTC-USD, ETH-USD and
SOL-USD trained at the AWS profile's model through `training.scheduler` (concurrent jobs),
reporting per-epoch seconds, the three coins' epochs in all, and GPU busy %:

    python scripts/bench/gpu_lstm.py scheduler                        # GPU host, real sizes
    python scripts/bench/gpu_lstm.py scheduler --days 3 --epochs 1    # small, on a CPU
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from training.families.lstm.config import TrainConfig  # noqa: E402
from training.families.lstm.fit import DeviceData, EpochRunner, pick_precision  # noqa: E402
from training.families.lstm.network import DirectionLSTM  # noqa: E402


class SmiSampler:
    """``nvidia-smi`` utilization readings with their times, from a background process."""

    def __init__(self, interval_ms: int) -> None:
        self.samples: list[tuple[float, float]] = []
        self.proc = None
        if shutil.which("nvidia-smi") is None:
            return
        self.proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", f"-lms={interval_ms}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.samples.append((time.perf_counter(), float(line.strip().split(",")[0])))
            except ValueError:
                continue

    def mean_between(self, start: float, end: float) -> float | None:
        inside = [u for t, u in self.samples if start <= t <= end]
        return sum(inside) / len(inside) if inside else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)


def kernel_busy_share(runner: EpochRunner, data: DeviceData, steps: int, batch: int) -> float | None:
    """CUDA kernel time / wall time over ``steps`` training steps, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    sub = DeviceData.from_tensors(data.features, data.labels, data.train_ends[: steps * batch], data.window)
    full, runner.data = runner.data, sub
    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            torch.cuda.synchronize()
            began = time.perf_counter()
            runner.train_epoch(10_000)
            torch.cuda.synchronize()
            wall_us = (time.perf_counter() - began) * 1e6
        kernel_us = sum(
            e.self_device_time_total for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
        )
    except Exception as exc:  # CUPTI missing or restricted: report it, keep the rest of the bench
        print(f"profiler unavailable ({type(exc).__name__}: {exc})", file=sys.stderr)
        return None
    finally:
        runner.data = full
    return min(1.0, kernel_us / wall_us) if wall_us else None


def main() -> int:
    if sys.argv[1:2] == ["scheduler"]:
        from gpu_lstm_scheduler import main as scheduler_main

        return scheduler_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=1_000_000)
    p.add_argument("--cpu-windows", type=int, default=8_192, help="windows when no GPU is present")
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--window", type=int, default=60)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--profile-steps", type=int, default=30)
    p.add_argument("--sample-ms", type=int, default=100)
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    args = p.parse_args()

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    windows = args.windows if cuda else min(args.windows, args.cpu_windows)
    if not cuda:
        print(f"no GPU: CUDA is not available; running a reduced CPU version ({windows:,} windows)")
    precision = pick_precision(args.precision, device)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    rows = windows + args.window - 1
    # Built on the device: the benchmark must never stream data from host memory.
    features = torch.randn(rows, args.features, device=device)
    labels = (torch.rand(rows, device=device) > 0.5).float()
    ends = torch.arange(args.window - 1, rows, device=device, dtype=torch.int64)
    data = DeviceData.from_tensors(features, labels, ends, args.window)
    config = TrainConfig(window=args.window, hidden_size=args.hidden, num_layers=args.layers, batch_size=args.batch,
                         device=device.type, precision=precision, dropout=0.0)  # fmt: skip
    model = DirectionLSTM(args.features, args.hidden, args.layers, 0.0).to(device)
    runner = EpochRunner(model, data, config, device, precision)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    warm = DeviceData.from_tensors(features, labels, ends[: args.warmup_steps * args.batch], args.window)
    runner.data = warm
    runner.train_epoch(0)  # cudnn autotuning and allocator warm-up, not timed
    runner.data = data
    sync()

    sampler = SmiSampler(args.sample_ms) if cuda else None
    time.sleep(0.3 if cuda else 0)
    began = time.perf_counter()
    loss = runner.train_epoch(1)
    sync()
    train_s = time.perf_counter() - began
    ended = time.perf_counter()
    smi_busy = sampler.mean_between(began, ended) if sampler else None
    if sampler:
        sampler.stop()

    began = time.perf_counter()
    runner.probabilities(ends)
    sync()
    infer_s = time.perf_counter() - began
    kernel_busy = kernel_busy_share(runner, data, args.profile_steps, args.batch) if cuda else None

    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (no GPU)",
        "gpu": cuda,
        "torch": torch.__version__,
        "windows": windows, "features": args.features, "window": args.window, "hidden": args.hidden,
        "layers": args.layers, "batch": args.batch, "precision": precision,
        "train_epoch_s": train_s, "train_samples_per_s": windows / train_s,
        "infer_s": infer_s, "infer_samples_per_s": windows / infer_s,
        "gpu_busy_pct_nvidia_smi": smi_busy,
        "gpu_busy_pct_kernel_time": kernel_busy * 100 if kernel_busy is not None else None,
        "target_busy_pct": 80.0, "final_loss": loss,
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }  # fmt: skip
    busy = "n/a (no GPU)"
    if cuda:
        smi = f"{smi_busy:.0f}%" if smi_busy is not None else "n/a"
        ker = f"{kernel_busy * 100:.0f}%" if kernel_busy is not None else "n/a"
        busy = f"{smi} (nvidia-smi) / {ker} (kernel time), target >= 80%"
    print(
        f"gpu_lstm: {result['device']}, {windows:,} windows x {args.window} x {args.features}, {precision}, "
        f"batch {args.batch}: train {windows / train_s:,.0f} samples/s (epoch {train_s:.2f}s), "
        f"infer {windows / infer_s:,.0f} samples/s; GPU busy {busy}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
