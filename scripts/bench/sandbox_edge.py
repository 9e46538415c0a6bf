"""Does the sandbox's newcomer run pass the pre-live gate honestly? Per seed, mode and symbol.

Run by hand (one training at a time, CPU)::

    .venv/bin/python scripts/bench/sandbox_edge.py [--seeds 7] [--modes structured,random_walk]
        [--symbols BTC-USD,ETH-USD,SOL-USD] [--end 2026-11-23T00:00:00Z] [--days-back 10]

For each (mode, seed, day, symbol) it does what `console run --checklist retrain` does on
the sandbox, with the sandbox profile's training parameters, minus the network and the
instance (``--days-back N`` repeats it for the N days ending at ``--end``, each day's run
judged as if it were started then):

1. the sandbox profile's days (60) of 1m/5m/15m/1h candles and hourly CoinGecko-like fundamentals straight
   from the market simulator's generator (`remote.sandbox.market`), ending at ``--end``;
2. the feature file with `training.features` (`build_feature_file`, the fetch+features steps);
3. training with ``python -m training.train`` in a subprocess, under a valid sandbox lease
   (``RC_SANDBOX_INSTANCE_ID``), with the config the console's train step writes
   (costs and feature settings as in `console.settings` defaults);
4. the dry run with `runtime_checks.dryrun.dryrun_symbol` (which applies
   `runtime_checks.gate.judge_dryrun` with the default `GateCriteria`) on candles served by
   the generator, on every bar after the model's holdout starts (as the real step fetches
   them), judged by the console's default gate (`console.settings.GateSettings`). Only bars
   after the model's ``trained_until`` count, so every figure is out of sample.

The training parameters come from the shipped ``retrain`` checklist's sandbox profile and the
costs, promotion gates and features from the console's default settings, read at run time, so
the bench judges what a newcomer's ``make run`` does and cannot drift from it.

It prints one line per run with hit rate, p-value, baselines, mean confidence, after-cost
result and trades, and PASS/FAIL with the gate's first reasons; then per mode how often
each symbol passed and how often all of them did (what the checklist's gate needs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from console.settings import FeatureSettings, GateSettings, TrainingSettings  # noqa: E402
from console.steps import load_checklist  # noqa: E402
from remote.sandbox.market import MARKET_ANCHOR, all_time_high, fundamentals_at, sample_inputs, simulated_candles  # noqa: E402
from runtime_checks.alignment import DEFAULT_FETCH_BARS  # noqa: E402
from runtime_checks.dryrun import dryrun_symbol  # noqa: E402
from runtime_checks.gate import GateCriteria  # noqa: E402
from runtime_checks.inputs import SpecFeatureBuilder  # noqa: E402
from training.features.files import build_feature_file  # noqa: E402
from training.features.spec import FeatureConfig, spec_for  # noqa: E402
from training.guard import Lease, write_lease  # noqa: E402

DAY = 86_400
INSTANCE_ID = "i-0benchedge"


class GeneratorCandles:
    """A `CandleSource` that serves the simulator's candles with ``end`` as "now"."""

    def __init__(self, seed: int, mode: str, end: int) -> None:
        self.seed, self.mode, self.end = seed, mode, end

    def now(self) -> float:
        return float(self.end + 1)

    def latest(self, symbol: str, granularity: int, bars: int) -> pd.DataFrame:
        return simulated_candles(symbol, self.end - bars * granularity, self.end, granularity=granularity,
                                 seed=self.seed, mode=self.mode)  # fmt: skip


def hourly_fundamentals(seed: int, mode: str):
    """What `CoinGeckoFundamentals` returns from the simulator: hourly points and the ATH."""

    def fetch(symbol: str, start: int, end: int) -> pd.DataFrame:
        times = np.arange(start // 3600 * 3600, end + 1, 3600, dtype=np.int64)
        v = fundamentals_at(symbol, times, seed=seed, mode=mode)
        ath, ath_time = all_time_high(symbol, end, seed=seed, mode=mode)
        frame = pd.DataFrame(
            {
                "timestamp": pd.to_datetime(times, unit="s", utc=True).astype("datetime64[ns, UTC]"),
                "price": v["price"],
                "market_cap": v["market_cap"],
                "total_volume": v["total_volume"],
            }
        )
        frame["ath"] = ath
        frame["ath_time"] = pd.Series(
            [pd.Timestamp(ath_time, unit="s", tz="UTC")] * len(frame), dtype="datetime64[ns, UTC]"
        )
        return frame

    return fetch


def build(symbol: str, seed: int, mode: str, end: int, days: int, out: Path) -> int:
    config = FeatureConfig.from_mapping({"multi_timeframe_symbols": FeatureSettings().multi_timeframe_symbols})
    spec = spec_for(symbol, config)
    candles, fundamentals = sample_inputs(
        symbol, end - days * DAY, end, seed=seed, mode=mode, timeframes=spec.timeframes
    )
    return build_feature_file(spec, candles, fundamentals, out).rows


def train(symbol: str, work: Path, args: argparse.Namespace) -> dict:
    config = {"train": {"epochs": args.epochs, "window": args.window, "horizon": args.horizon,
                        "threshold": args.threshold, "num_layers": args.num_layers,
                        "sample_stride": args.sample_stride, "weight_decay": args.weight_decay, "device": "cpu"},
              "costs": TrainingSettings().costs, "gates": TrainingSettings().promotion_gates,
              "features": {"multi_timeframe_symbols": FeatureSettings().multi_timeframe_symbols}}  # fmt: skip
    (work / "train-config.json").write_text(json.dumps(config))
    lease = Lease.issue(run_id="bench-edge", host_kind="sandbox", instance_id=INSTANCE_ID,
                        host_key_fingerprint="SHA256:bench", operator_machine_id="bench-operator")  # fmt: skip
    write_lease(work / ".rc-lease.json", lease)
    env = {**os.environ, "RC_SANDBOX_INSTANCE_ID": INSTANCE_ID, "RC_LEASE_FILE": str(work / ".rc-lease.json"),
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}  # fmt: skip
    env.pop("RC_SANDBOX_HOST_KEY_FINGERPRINT", None)
    # `python -m training.train` runs main() as the module loads; importing it first and
    # calling main() is the same code path, and immune to helpers defined below the
    # module's `if __name__ == "__main__"` block.
    entry = "import sys, training.train as t; sys.exit(t.main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", entry, "--symbol", symbol, "--features-dir", str(work / "features"),
           "--out", str(work / "artifacts"), "--config", str(work / "train-config.json"), "--fresh"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    done = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not done or done[-1].get("event") != "done":
        raise RuntimeError(f"training {symbol} exited {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return done[-1]


def judge(symbol: str, work: Path, seed: int, mode: str, end: int, bars: int) -> tuple[list[str], dict]:
    result = dryrun_symbol(symbol, models_dir=work / "artifacts", features_dir=work / "features",
                           builder=SpecFeatureBuilder(hourly_fundamentals(seed, mode)),
                           candles=GeneratorCandles(seed, mode, end), iterations=1, fetch_bars=bars,
                           criteria=GateCriteria.from_settings(GateSettings())).result  # fmt: skip
    return list(result.details["problems"]), result.figures


def line(label: str, problems: list[str], f: dict) -> str:
    verdict = "PASS" if not problems else "FAIL"
    why = "" if not problems else "  <- " + "; ".join(p.split(": ", 1)[1] for p in problems[:2])
    e = f.get("evidence") or {}
    bases = e.get("baselines") or {}
    paired = " ".join(f"{k} {b.get('accuracy', float('nan')):.3f} p={b.get('p_value', float('nan')):.2g}"
                      for k, b in sorted(bases.items()))  # fmt: skip
    return (f"    {label:<8} {verdict} n={f['samples']:>4} accuracy {e.get('accuracy', f['hit_rate']):.3f} "
            f"AUC {e.get('auc', float('nan')):.3f} p={e.get('auc_p_value', float('nan')):.2g} vs [{paired}] "
            f"trade hit {e.get('trade_hit_rate', float('nan')):.3f} "
            f"net {f['after_cost_net_return']:+.4f} p={e.get('net_p_value', float('nan')):.2g} "
            f"over {f['after_cost_trades']} trades (band {e.get('threshold', float('nan')):.2f}, long {f.get('long_share', float('nan')):.0%})" + why)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="7")
    p.add_argument("--modes", default="structured,random_walk")
    p.add_argument("--symbols", default="BTC-USD,ETH-USD,SOL-USD")
    anchor = datetime.fromtimestamp(MARKET_ANCHOR, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    p.add_argument("--end", default=anchor, help="the simulated 'now' (UTC) of the newest run (default: where a "
                   "fresh sandbox's market starts, `MARKET_ANCHOR`)")  # fmt: skip
    p.add_argument("--days-back", type=int, default=1, help="also judge the runs started 1..N-1 days before --end")
    # The sandbox profile's training (console/checklist/checklists/retrain.toml), read now.
    profile = load_checklist("retrain", profile="sandbox").params
    p.add_argument("--days", type=int, default=int(profile["days"]))
    p.add_argument("--epochs", type=int, default=int(profile["epochs"]))
    p.add_argument("--window", type=int, default=int(profile["window"]))
    p.add_argument("--num-layers", type=int, default=int(profile["num_layers"]))
    p.add_argument("--sample-stride", type=int, default=int(profile["sample_stride"]))
    p.add_argument("--weight-decay", type=float, default=float(profile["weight_decay"]))
    p.add_argument("--horizon", type=int, default=int(profile["horizon"]))
    p.add_argument("--threshold", type=float, default=float(profile.get("threshold", 0.0)))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    newest = int(datetime.fromisoformat(args.end.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp())
    newest = newest // 60 * 60
    symbols = args.symbols.split(",")
    per_symbol: dict[tuple[str, str], list[int]] = {}
    all_pass: dict[str, list[int]] = {}
    print(f"window {args.window}, layers {args.num_layers}, stride {args.sample_stride}, horizon {args.horizon}, "
          f"epochs {args.epochs}, {args.days} days, dry run on the whole holdout (at least {DEFAULT_FETCH_BARS} bars)")  # fmt: skip
    for mode in args.modes.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for back in range(args.days_back):
                end = newest - back * DAY
                passed_here = []
                for symbol in symbols:
                    with tempfile.TemporaryDirectory(prefix="edge-") as tmp:
                        work = Path(tmp)
                        t0 = time.time()
                        rows = build(symbol, seed, mode, end, args.days, work / "features")
                        t1 = time.time()
                        done = train(symbol, work, args)
                        t2 = time.time()
                        stamp = datetime.fromtimestamp(end, timezone.utc).strftime("%Y-%m-%d")
                        print(f"{mode:<11} seed {seed:>2} {stamp} {symbol}: {rows} rows, features {t1 - t0:.0f}s, "
                              f"train {t2 - t1:.0f}s, test accuracy {done['test_accuracy']:.3f}, "
                              f"test net {done['net_return']:+.4f}")  # fmt: skip
                        problems, figures = judge(symbol, work, seed, mode, end, DEFAULT_FETCH_BARS)
                        print(line("dryrun", problems, figures), flush=True)
                        per_symbol.setdefault((mode, symbol), []).append(int(not problems))
                        passed_here.append(not problems)
                all_pass.setdefault(mode, []).append(int(all(passed_here)))
    for (mode, symbol), passed in per_symbol.items():
        print(f"{mode:<11} {symbol}: gate passes {sum(passed)}/{len(passed)}")
    for mode, passed in all_pass.items():
        print(f"{mode:<11} all of {', '.join(symbols)}: {sum(passed)}/{len(passed)} runs")


if __name__ == "__main__":
    os.environ.setdefault("RC_GATE_KEY_FILE", os.devnull)
    main()
