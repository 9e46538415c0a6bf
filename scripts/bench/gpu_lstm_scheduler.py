"""The ``scheduler`` mode of ``gpu_lstm.py``: three symbols trained through the scheduler's real path.

It writes one feature file per symbol (the real file contract, `training.families.lstm.synthetic`
prices on one-minute bars, ``--days`` x 1440 rows of ``--features`` features), issues a sandbox
lease for this process (the guard refuses to train without one), and runs
`training.scheduler.run_schedule`: one ``python -m training.train`` subprocess per symbol, run
concurrently as ``--mode`` says (default ``parallel``: all three at once). Defaults are the AWS
profile's model (console/checklist/checklists/retrain.toml [params] and the lstm family's
`TrainConfig`): 2-layer LSTM, hidden 64, window 60, batch 512, 73 features, 365 days, 15 epochs,
``--patience`` defaulting to the epoch count so every epoch is timed. It reports:

- each symbol's per-epoch seconds (the trainer's own ``epoch`` events) and last validation loss;
- the three coins' epochs in all: wall seconds from the first epoch's start to the last one's
  end, and the sum of every epoch's seconds;
- GPU busy % over that span where CUDA is present (``nvidia-smi`` sampled every ``--sample-ms``,
  else ``torch.cuda.utilization``); on CPU it says it is not measured.

``--cuda-graph auto`` trains with the train step recorded as one CUDA graph
(`training.families.lstm.graphed`), ``off`` (default) eagerly, and ``both`` runs the schedule
once each way on the same feature files and prints, per symbol, both runs' epoch seconds and
last validation losses side by side: what is learned must not change (same seed, same
batches), only how fast.

    python scripts/bench/gpu_lstm.py scheduler                        # on a GPU host, the real sizes
    python scripts/bench/gpu_lstm.py scheduler --cuda-graph both      # eager against the recorded step
    python scripts/bench/gpu_lstm.py scheduler --days 3 --epochs 1    # a small CPU run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from training.families.lstm.synthetic import synthetic_frame, synthetic_hash, write_synthetic_feature_file  # noqa: E402
from training.guard import Lease, write_lease  # noqa: E402
from training.scheduler import MODES, Emitter, SchedulePlan, run_schedule  # noqa: E402

SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
INSTANCE_ID = "i-bench-gpu-lstm"


class EventLog:
    """A stream for the scheduler's `Emitter`: keeps each JSON line with the time it arrived."""

    def __init__(self, echo: bool) -> None:
        self.events: list[tuple[float, dict]] = []
        self.echo = echo

    def write(self, text: str) -> None:
        now = time.perf_counter()
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.events.append((now, event))
                failed = event.get("event") == "job_end" and event.get("state") != "succeeded"
                if self.echo or failed or event.get("event") == "error":
                    print(line, file=sys.stderr)

    def flush(self) -> None:
        pass


class TorchUtilSampler:
    """``torch.cuda.utilization`` (NVML) sampled from a thread, when nvidia-smi is not on PATH."""

    def __init__(self, interval_ms: int) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self.interval = interval_ms / 1000
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.perf_counter(), float(torch.cuda.utilization())))
            except Exception:  # pynvml missing: nothing to sample
                return
            self._stop.wait(self.interval)

    def mean_between(self, start: float, end: float) -> float | None:
        inside = [u for t, u in self.samples if start <= t <= end]
        return sum(inside) / len(inside) if inside else None

    def stop(self) -> None:
        self._stop.set()


def write_features(features_dir: Path, symbols, days: int, n_features: int) -> int:
    """One feature file per symbol, ``days`` of one-minute bars; returns rows per symbol."""
    rows = days * 1440
    for seed, symbol in enumerate(symbols):
        frame = synthetic_frame(rows, n_features, seed=seed)
        frame["timestamp"] = pd.date_range("2026-01-01", periods=rows, freq="1min", tz="UTC")
        write_synthetic_feature_file(features_dir, symbol, rows, n_features, frame=frame)
    return rows


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gpu_lstm.py scheduler", description=__doc__.splitlines()[0])
    p.add_argument("--symbols", default=",".join(SYMBOLS))
    p.add_argument("--days", type=int, default=365, help="days of one-minute bars per symbol")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--patience", type=int, help="early-stopping patience (default: --epochs, so none stops early)")
    p.add_argument("--features", type=int, default=73)
    p.add_argument("--window", type=int, default=60)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    p.add_argument("--cuda-graph", default="off", choices=("off", "auto", "both"))
    p.add_argument("--mode", default="parallel", choices=MODES, help="the scheduler's mode (default parallel)")
    p.add_argument("--max-concurrent", type=int, default=3, help="jobs at once in hybrid mode")
    p.add_argument("--sample-ms", type=int, default=100)
    p.add_argument("--work-dir", type=Path, help="features and artifacts here (default: a temporary folder)")
    p.add_argument("--verbose", action="store_true", help="echo every scheduler event to stderr")
    p.add_argument("--out", type=Path, help="write the result as JSON here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if not cuda:
        print("no GPU: CUDA is not available (or --device cpu); GPU busy % is not measured on the CPU")
    with tempfile.TemporaryDirectory(prefix="gpu-lstm-sched-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        rows = write_features(work / "FEATURES", symbols, args.days, args.features)
        print(f"wrote {len(symbols)} feature files of {rows:,} rows x {args.features} features "
              f"in {time.perf_counter() - began:.1f}s")  # fmt: skip
        # The guard trains only on a leased host: lease this process as a sandbox instance.
        lease = Lease.issue(run_id="bench-gpu-lstm", host_kind="sandbox", instance_id=INSTANCE_ID,
                            host_key_fingerprint="SHA256:bench", operator_machine_id="bench")  # fmt: skip
        lease_path = write_lease(work / ".rc-lease.json", lease)
        os.environ["RC_SANDBOX_INSTANCE_ID"] = INSTANCE_ID
        os.environ.pop("RC_SANDBOX_HOST_KEY_FINGERPRINT", None)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        choices = ("off", "auto") if args.cuda_graph == "both" else (args.cuda_graph,)
        results = {}
        for choice in choices:
            results[choice] = schedule_once(args, symbols, rows, work, lease_path, cuda, choice)
    if len(results) > 1:
        compare(symbols, results)
    return max(code for code, _ in results.values())


def schedule_once(args, symbols, rows: int, work: Path, lease_path: Path, cuda: bool, choice: str):
    """One run of the schedule with ``--cuda-graph choice``; (exit code, the result dict)."""
    train_args = (
        "--epochs", str(args.epochs), "--patience", str(args.patience or args.epochs),
        "--window", str(args.window), "--hidden-size", str(args.hidden), "--num-layers", str(args.layers),
        "--batch-size", str(args.batch), "--device", args.device, "--precision", args.precision,
        "--expected-feature-hash", synthetic_hash(args.features), "--cuda-graph", choice,
    )  # fmt: skip
    plan = SchedulePlan(symbols=symbols, out=work / f"artifacts-{choice}", features_dir=work / "FEATURES",
                        mode=args.mode, max_concurrent=args.max_concurrent, retries=0, backoff_s=0,
                        lease=lease_path, train_args=train_args, force=True)  # fmt: skip
    sampler: Any = None
    if cuda:
        from gpu_lstm import SmiSampler

        sampler = SmiSampler(args.sample_ms)
        if sampler.proc is None:
            sampler = TorchUtilSampler(args.sample_ms)
    log = EventLog(args.verbose)
    began = time.perf_counter()
    summary = run_schedule(plan, emit=Emitter(log))
    schedule_s = time.perf_counter() - began
    if sampler:
        sampler.stop()
    print(f"--cuda-graph {choice}:")
    return report(args, symbols, rows, log, summary, schedule_s, sampler, cuda, choice)


def compare(symbols, results) -> None:
    """Both runs side by side: speed may differ, the validation losses must agree within noise."""
    off, auto = results["off"][1], results["auto"][1]
    for symbol in symbols:
        a, b = off["per_symbol"][symbol], auto["per_symbol"][symbol]
        print(f"  {symbol}: epochs eager {sum(a['epoch_s']):.2f}s, recorded {sum(b['epoch_s']):.2f}s "
              f"({b['cuda_graph']}); last val_loss eager {a['last_val_loss']}, recorded {b['last_val_loss']}")  # fmt: skip
    print(f"all epochs wall: eager {off['epochs_wall_s']}s, recorded {auto['epochs_wall_s']}s; "
          f"GPU busy eager {off['gpu_busy_pct']}, recorded {auto['gpu_busy_pct']}")  # fmt: skip





def report(args, symbols, rows, log: EventLog, summary: dict, schedule_s: float, sampler, cuda: bool, choice: str):
    epochs = [(t, e) for t, e in log.events if e.get("event") == "epoch"]
    starts = {e.get("symbol"): e for _, e in log.events if e.get("event") == "start"}
    per_symbol: dict[str, dict[str, Any]] = {}
    for symbol in symbols:
        mine = [e for _, e in epochs if e.get("symbol") == symbol]
        per_symbol[symbol] = {
            "train_windows": starts.get(symbol, {}).get("train"),
            "device": starts.get(symbol, {}).get("device"),
            "precision": starts.get(symbol, {}).get("precision"),
            "cuda_graph": starts.get(symbol, {}).get("cuda_graph"),
            "epoch_s": [round(float(e["seconds"]), 3) for e in mine],
            "last_val_loss": mine[-1].get("val_loss") if mine else None,
        }
    span = None
    if epochs:
        first = min(t - float(e["seconds"]) for t, e in epochs)
        last = max(t for t, _ in epochs)
        span = (first, last)
    busy = sampler.mean_between(*span) if (sampler and span) else None
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (no GPU)",
        "torch": torch.__version__,
        "mode": args.mode, "max_concurrent": args.max_concurrent, "symbols": list(symbols),
        "days": args.days, "rows_per_symbol": rows, "features": args.features, "window": args.window,
        "hidden": args.hidden, "layers": args.layers, "batch": args.batch, "epochs": args.epochs,
        "cuda_graph_setting": choice,
        "per_symbol": per_symbol,
        "epochs_wall_s": round(span[1] - span[0], 3) if span else None,
        "epochs_sum_s": round(sum(float(e["seconds"]) for _, e in epochs), 3),
        "schedule_wall_s": round(schedule_s, 3),
        "gpu_busy_pct": busy,
        "jobs": {r["symbol"]: r["state"] for r in summary.get("symbols", [])},
    }  # fmt: skip
    for symbol, row in per_symbol.items():
        secs = ", ".join(f"{s:.2f}" for s in row["epoch_s"]) or "none"
        print(f"  {symbol}: {row['train_windows'] or 0:,} training windows on {row['device']} "
              f"({row['precision']}); epoch seconds [{secs}]; last val_loss {row['last_val_loss']}")  # fmt: skip
    if not cuda:
        gpu = "not measured (no GPU)"
    elif busy is None:
        gpu = "n/a (no utilisation samples)"
    else:
        gpu = f"{busy:.0f}% (target >= 80%)"
    wall = f"{result['epochs_wall_s']:.2f}s" if span else "n/a"
    print(
        f"gpu_lstm scheduler: {result['device']}, {len(symbols)} symbols x {args.epochs} epochs, mode {args.mode}, "
        f"{rows:,} rows x {args.features} features, window {args.window}, hidden {args.hidden} x {args.layers}, "
        f"batch {args.batch}: all epochs {wall} wall (sum of epochs {result['epochs_sum_s']:.2f}s), "
        f"schedule {schedule_s:.2f}s incl. start-up and judging; GPU busy {gpu}"
    )
    if args.out:
        out = args.out if args.cuda_graph != "both" else args.out.with_name(f"{args.out.stem}-{choice}{args.out.suffix}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str))
    failed = [s for s, state in result["jobs"].items() if state != "succeeded"]
    if failed:
        print(f"jobs that did not succeed: {', '.join(failed)} (rerun with --verbose to see why)", file=sys.stderr)
        return 1, result
    return 0, result


if __name__ == "__main__":
    sys.exit(main())
