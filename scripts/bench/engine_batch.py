"""The engine at scale on the sandbox's Batch: features, shared encoder, heads on N array children.

    .venv/bin/python scripts/bench/engine_batch.py --coins 12 --days 14 --children 2 --running 2
    .venv/bin/python scripts/bench/engine_batch.py --coins 400 --days 14 --children 8 --running 2   # the target

Measured 2026-12-05 on the 2-core machine shared with six other agents (load 4-10, run
under ``nice -n 10``), per coin at 60 / 150 / 400 coins x 14 days: features 0.23 / 0.22 /
0.28 s, encoder 0.12 / 0.12 / 0.11 s, Batch (prepare + follow + collect) 1.57 / 1.33 /
1.29 s; linear in coins, the fixed cost spread thinner. 400 coins end to end: 12 min 08 s
wall (features 111 s, encoder 45 s, Batch 514 s), peak memory of the process 417 MB
(328 MB after the encoder, 272 MB at 60 coins: it streams one coin at a time).

What it measures, phase by phase, in a fresh sandbox (its daemon's start excluded):

1. features: each coin's 1-minute candles (and its spec's higher timeframes and daily
   fundamentals) straight from the simulator's generator (`remote.sandbox.market.sample_inputs`),
   built into feature files with the real builder. The HTTP fetch is *not* in this figure:
   at the exchange's 10 requests a second one host needs days*1440/300 requests per coin
   (the Batch children each fetching their own coins is what spreads that out);
2. encoder: the shared PCA over every coin's training rows, streamed one coin at a time,
   with the process's peak memory (ru_maxrss) after it;
3. batch: prepare (upload), submit one array job of ``--children`` children, follow it to
   the end (the sandbox runs at most ``--running`` children at once: the compute
   environment's vCPUs), collect with every sha256 checked;
4. one head: LightGBM on 30 days of 1-minute rows over 50 components on one thread.

It prints the figures and the per-coin seconds. The projection to 400 coins x 365 days,
the HTTP fetch included, is `engine_checklist.py`'s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=12)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--running", type=int, default=2, help="children the sandbox runs at once")
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (features, models) for a look")
    args = parser.parse_args()
    started = time.monotonic()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(tempfile.mkdtemp(prefix="rc-bench-engine-"))
    figures: dict[str, float | int | str] = {"coins": args.coins, "days": args.days, "children": args.children,
                                             "running": args.running}  # fmt: skip

    from remote.sandbox.universe import RANKED

    coins = [c.product_id for c in RANKED[: args.coins]]
    began = time.monotonic()
    build_features(coins, args.days, work / "features")
    figures["features_s"] = round(time.monotonic() - began, 2)

    began = time.monotonic()
    params = {"split": {"horizon": 5, "longest_feature_window": 2040}, "encoder": {"n_components": args.components},
              "gates": {"min_trades": 30}}  # fmt: skip
    encoder_hash = fit_encoder(coins, work / "features", work / "encoder", params)
    figures["encoder_s"] = round(time.monotonic() - began, 2)
    figures["peak_rss_mb_after_encoder"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["encoder"] = encoder_hash[:19]

    figures.update(run_batch(coins, work, params, args.children, args.running))
    figures["head_30d_50c_1thread_s"] = round(one_head_seconds(args.components), 3)
    figures["per_coin_features_s"] = round(float(figures["features_s"]) / args.coins, 3)
    figures["per_coin_batch_s"] = round(float(figures["batch_s"]) / args.coins, 3)
    figures["wall_s"] = round(time.monotonic() - started, 1)
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)  # 150 coins x 14 days leave ~2.6 GB
    print(json.dumps(figures, indent=1))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    return 0


def build_features(coins: list[str], days: int, out: Path) -> None:
    from remote.sandbox.market import DAY, sample_inputs
    from training.features.files import build_feature_file
    from training.features.spec import spec_for

    end = (int(time.time()) // DAY) * DAY
    start = end - days * DAY
    for coin in coins:
        spec = spec_for(coin)
        candles, fundamentals = sample_inputs(coin, start, end, timeframes=spec.timeframes)
        build_feature_file(spec, candles, fundamentals, out)


def fit_encoder(coins: list[str], features: Path, folder: Path, params: dict) -> str:
    from training.dataset import load_symbol_dataset
    from training.families.gbm.encoder import common_names
    from training.families.gbm.encoder import fit_encoder as fit
    from training.families.gbm.params import GbmParams
    from training.features.io import read_feature_meta

    gbm = GbmParams.from_mapping(params)
    paths = [features / f"{c}.parquet" for c in coins]
    names = common_names(read_feature_meta(p).feature_names for p in paths)
    encoder = fit((load_symbol_dataset(p, gbm.split) for p in paths), names, gbm.n_components)
    encoder.save(folder)
    return encoder.hash


def run_batch(coins: list[str], work: Path, params: dict, children: int, running: int) -> dict[str, float]:
    from remote.backends import backend_class
    from remote.backends.base import BackendContext, JobPhase, JobSpec, RunPlan
    from remote.sandbox.lifecycle import down, ensure_up
    from remote.storage import LocalArtifactStore

    state = work / "state"
    started = time.monotonic()
    endpoints = ensure_up(state, batch_running=running)
    out: dict[str, float] = {"sandbox_start_s": round(time.monotonic() - started, 2)}
    try:
        run_id = f"bench-{int(time.time())}"
        options = {"bucket": run_id, "features_dir": str(work / "features"), "encoder_dir": str(work / "encoder"),
                   "poll_s": 1.0}  # fmt: skip
        backend = backend_class("batch")(BackendContext(run_id=run_id, store=LocalArtifactStore(work / "store"),
                                                        aws=endpoints.aws_target, options=options))  # fmt: skip
        began = time.monotonic()
        backend.prepare(RunPlan(run_id, "batch", units=tuple(coins)))
        out["prepare_s"] = round(time.monotonic() - began, 2)
        spec = JobSpec(run_id=run_id, name=f"engine-{run_id}", family="gbm", units=tuple(coins), params=params,
                       array_size=min(children, len(coins)))  # fmt: skip
        began = time.monotonic()
        ref = backend.submit(spec)
        status = backend.follow(ref, lambda e: None, should_stop=lambda: False)
        out["follow_s"] = round(time.monotonic() - began, 2)
        if status.phase is not JobPhase.SUCCEEDED:
            raise SystemExit(f"the array job ended {status.phase.value}: {status.reason}")
        began = time.monotonic()
        collected = backend.collect(ref, work / "collected")
        out["collect_s"] = round(time.monotonic() - began, 2)
        out["collected_files"] = collected.files
        out["batch_s"] = round(out["prepare_s"] + out["follow_s"] + out["collect_s"], 2)
        summary = json.loads((work / "collected" / "summary.json").read_text())
        seconds = [float(u.get("seconds", 0)) for u in summary["units"]]
        out["head_unit_mean_s"] = round(sum(seconds) / max(1, len(seconds)), 3)
        out["passed"] = sum(1 for u in summary["units"] if u.get("passed"))
    finally:
        down(state)
    return out


def one_head_seconds(components: int) -> float:
    import numpy as np

    from training.families.gbm.head import fit_head
    from training.families.gbm.params import HeadConfig

    rng = np.random.default_rng(0)
    rows = 30 * 1440
    x = rng.standard_normal((rows, components)).astype(np.float32)
    y = (x[:, 0] + rng.standard_normal(rows) > 0).astype(np.float32)
    cut = int(rows * 0.8)
    with tempfile.TemporaryDirectory() as tmp:
        began = time.monotonic()
        fit_head(
            x[:cut], y[:cut], x[cut:], y[cut:], HeadConfig(threads=1), work_dir=Path(tmp), encoder_hash="x", seed=0
        )
        return time.monotonic() - began


if __name__ == "__main__":
    sys.exit(main())
