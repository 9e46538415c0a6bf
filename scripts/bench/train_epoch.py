"""One training epoch on the CPU: our trainer (`EpochRunner.train_epoch`) against a bare PyTorch loop.

Both start from the same weights and see the same batches in the same order (the
permutation our trainer draws for the epoch), built the same way (windows gathered by
index from one feature matrix), so the difference is our loop's own overhead: autocast
and grad-scaler plumbing, loss accumulation, etc. Target: at most 10%.

    .venv/bin/python scripts/bench/train_epoch.py [--rows 20000] [--features 32] [--repeats 5] [--out bench.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from training.dataset import gather_windows  # noqa: E402
from training.families.lstm.config import TrainConfig  # noqa: E402
from training.families.lstm.fit import DeviceData, EpochRunner  # noqa: E402
from training.families.lstm.network import DirectionLSTM  # noqa: E402


def bare_epoch(model: nn.Module, features, labels, order, window: int, batch_size: int, lr: float) -> float:
    """The plainest correct loop: gather, forward, BCE, backward, Adam step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    last = 0.0
    for start in range(0, len(order), batch_size):
        ends = order[start : start + batch_size]
        x, y = gather_windows(features, ends, window), labels[ends]
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        last = loss.detach()
    return float(last)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--window", type=int, default=60)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps CPU time comparable)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device("cpu")
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.standard_normal((args.rows, args.features)).astype(np.float32))
    labels = torch.from_numpy((rng.random(args.rows) > 0.5).astype(np.float32))
    ends = torch.arange(args.window - 1, args.rows, dtype=torch.int64)
    data = DeviceData.from_tensors(features, labels, ends, args.window)
    config = TrainConfig(window=args.window, hidden_size=args.hidden, num_layers=args.layers, batch_size=args.batch,
                         device="cpu", precision="fp32", dropout=0.0)  # fmt: skip
    base = DirectionLSTM(args.features, args.hidden, args.layers, 0.0)

    ours_s, bare_s, ours_cpu, bare_cpu = [], [], [], []
    for repeat in range(args.repeats + 1):  # the first round warms up both and is not counted
        epoch = repeat + 1
        ours_model = copy.deepcopy(base)
        runner = EpochRunner(ours_model, data, config, device, "fp32")
        generator = torch.Generator(device=device).manual_seed(config.seed + epoch)
        order = ends[torch.randperm(len(ends), generator=generator)]
        bare_model = copy.deepcopy(base)
        # Alternate which goes first so drift in machine load hits both alike.
        runs = [("ours", lambda: runner.train_epoch(epoch)),
                ("bare", lambda: bare_epoch(bare_model, features, labels, order, args.window, args.batch,
                                            config.learning_rate))]  # fmt: skip
        if repeat % 2:
            runs.reverse()
        for name, fn in runs:
            began, cpu_began = time.perf_counter(), time.process_time()
            fn()
            took, cpu = time.perf_counter() - began, time.process_time() - cpu_began
            if repeat:
                (ours_s if name == "ours" else bare_s).append(took)
                (ours_cpu if name == "ours" else bare_cpu).append(cpu)
        if repeat:
            same = all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours_model.parameters(), bare_model.parameters()))
            if not same:
                print("warning: ours and bare diverged (different batches or maths?)", file=sys.stderr)
    ours, bare = statistics.median(ours_s), statistics.median(bare_s)
    ours_c, bare_c = statistics.median(ours_cpu), statistics.median(bare_cpu)
    # CPU seconds are the verdict: on a shared machine wall time mostly measures the neighbours.
    overhead = (ours_c / bare_c - 1.0) * 100.0
    wall_overhead = (ours / bare - 1.0) * 100.0
    result = {
        "rows": args.rows, "features": args.features, "window": args.window, "hidden": args.hidden,
        "layers": args.layers, "batch": args.batch, "samples": len(ends), "threads": torch.get_num_threads(),
        "ours_epoch_s": ours, "bare_epoch_s": bare, "ours_epoch_cpu_s": ours_c, "bare_epoch_cpu_s": bare_c,
        "overhead_pct": overhead, "wall_overhead_pct": wall_overhead, "target_pct": 10.0,
        "ours_runs_s": ours_s, "bare_runs_s": bare_s, "ours_runs_cpu_s": ours_cpu, "bare_runs_cpu_s": bare_cpu,
    }  # fmt: skip
    print(
        f"train_epoch: ours {ours_c:.3f} CPU-s ({ours:.3f}s wall), bare {bare_c:.3f} CPU-s ({bare:.3f}s wall) "
        f"per epoch of {len(ends)} windows, median of {args.repeats}, {torch.get_num_threads()} thread(s); "
        f"overhead {overhead:+.1f}% CPU ({wall_overhead:+.1f}% wall), target <= 10%"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
