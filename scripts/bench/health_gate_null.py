"""How often the health gate's tests pass when there is nothing to find, and how often when there is.

    .venv/bin/python scripts/bench/health_gate_null.py [--draws 200] [--days 5000] [--last 2040-12-31]
        [--world random_walk|structured] [--first-seed 0]

Each draw is one seed of the sandbox simulator's daily process (`remote.sandbox.daily`, built
in-process: no HTTP, no torch), turned into the asset-feature table by the real builder and
judged by the real health judge (`training.families.health.judge`) over its test part. Three
scores stand in for trained models, each fit or read on the training part only:

- ``low_vol``: minus the 21-day volatility (what the structured world's quality shows most);
- ``momentum``: the 63-day relative strength itself (the rule baseline, so only its test
  against zero can pass);
- ``readout``: the model's own ridge read-out fit on the ten scaled features instead of the
  autoencoder's latent.

For each score and comparison the line gives the share of draws whose p-value is under the
gate's alpha (0.05), under each test, with a 95 % interval for that share; and the share that
passes the whole gate. On the ``random_walk`` the shares are false-positive rates: a test
that owns up to its sample should stay near 5 % and the gate (both comparisons at once) under
it. On ``structured`` they are the tests' power.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import date

import numpy as np
import pandas as pd

from remote.sandbox.daily import ASSETS, CONTEXT, DailyProcess
from training import stats
from training.families.evaluation import judge
from training.families.health import fit_readout
from training.families.health.judge import (
    BLOCK_DAYS,
    MIN_TEST_DAYS,
    RESAMPLES,
    HealthSamples,
    daily_correlations,
    day_ranks,
    evaluation,
    health_rules,
    prepare,
)
from training.families.health.score import relative_strength_rank
from training.families.investment.build import WARMUP_DAYS, asset_table

ALPHA = 0.05
LAST = "2040-12-31"


def feature_table(seed: int, world: str, days: int, last: str = LAST) -> pd.DataFrame:
    """The newest ``days`` trading days up to ``last`` of the simulator's assets, as the builder makes them."""
    process = DailyProcess(seed, world)
    stop = process.index(date.fromisoformat(last)) + 1
    rows = np.flatnonzero(process.trading[:stop])[-(days + WARMUP_DAYS) :]
    index = pd.DatetimeIndex([process.days[i] for i in rows])
    closes = pd.DataFrame({name: process.closes[name][rows] for name in (*CONTEXT, *ASSETS)}, index=index)
    return asset_table(closes, ASSETS)


def scores(samples: HealthSamples) -> dict[str, np.ndarray]:
    """Each stand-in's score for the test rows."""
    test = samples.frame.iloc[samples.test]
    weights = fit_readout(samples.x[samples.train], day_ranks(samples.frame, samples.train), ridge=10.0)
    readout = np.column_stack([samples.x, np.ones(len(samples.x))]) @ weights
    return {
        "low_vol": -test["vol_21d"].to_numpy(),
        "momentum": relative_strength_rank(test.reset_index(drop=True)),
        "readout": readout[samples.test],
    }


def share(hits: list[bool]) -> str:
    """The share of hits with a 95 % Wilson interval."""
    n, k = len(hits), sum(hits)
    p, z = k / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{p:6.1%} [{max(0.0, centre - half):.1%}, {min(1.0, centre + half):.1%}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--days", type=int, default=5000)
    parser.add_argument("--last", default=LAST, help="the newest day (the simulator's last is 2040-12-31)")
    parser.add_argument("--world", choices=("random_walk", "structured"), default="random_walk")
    args = parser.parse_args()
    began = time.time()
    hits: dict[tuple[str, str, str], list[bool]] = {}
    for seed in range(args.first_seed, args.first_seed + args.draws):
        samples = prepare(feature_table(seed, args.world, args.days, args.last))
        part = samples.frame.iloc[samples.test].reset_index(drop=True)
        rule = daily_correlations(part, relative_strength_rank(part))
        for name, score in scores(samples).items():
            ours = daily_correlations(part, score)
            for against, other in (("rel_strength_rank", rule), ("no_skill", np.zeros_like(rule))):
                diff = (ours - other)[np.isfinite(ours) & np.isfinite(other)]
                boot = stats.block_bootstrap(
                    lambda i, d=diff: float(d[i].mean()), len(diff), block=BLOCK_DAYS, resamples=RESAMPLES
                )
                tests = {
                    "bootstrap": boot.p_value,
                    "sign_flip": stats.block_sign_flip_p(diff, block=BLOCK_DAYS, resamples=RESAMPLES),
                    "t_block_means": stats.batch_means_t_p(diff, block=BLOCK_DAYS),
                }
                for test, p in tests.items():
                    hits.setdefault((name, against, test), []).append(p < ALPHA)
            verdict = judge(evaluation(samples, score, 0.0, ALPHA), health_rules(MIN_TEST_DAYS, ALPHA))
            hits.setdefault((name, "whole gate", ""), []).append(verdict.passed)
    print(f"{args.world}, {args.draws} draws of {args.days} days to {args.last}, {len(ASSETS)} assets, alpha {ALPHA}")
    for (name, against, test), got in sorted(hits.items()):
        print(f"  {name:9s} {against:18s} {test:14s} p<{ALPHA}: {share(got)}")
    print(f"{time.time() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
