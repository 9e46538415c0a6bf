"""How often a model without skill is promoted and passes the gate; and whether skill still passes.

Run by hand (numbers in docs/methods.md and the issue-18 note):

    .venv/bin/python scripts/bench/gate_null_sim.py --trials 1000 --skill-trials 40 --workers 2

Each trial is one market from the sandbox simulator (90 days of five-minute candles, its
own seed), put through the project's own pipeline with the default rules:

1. features from the small causal builder (`runtime_checks.small.SmallBuilder`), split
   chronologically: train 55% | validation 15% | test 15% | holdout 15%, a purge of
   ``horizon + 48`` bars between parts;
2. a logistic model fitted on the training part only (the honesty tests' recipe), its
   long/short band picked on the validation part (`training.metrics.pick_threshold`:
   the threshold search a lucky model benefits from);
3. **promotion**: `training.evidence.direction_evidence` on the test part, against the
   training majority and the last move, judged by `EvidenceRules()` (promotion's rules);
4. **gate**: the same evidence on the holdout, after the test part (the dry run's bars),
   judged by `runtime_checks.gate.GateCriteria().evidence_rules()`.

``random_walk`` markets carry no skill to find, judged at zero costs so that the
significance rules, not costs, must refuse them; ``structured`` markets carry a real,
learnable edge, judged after the default 28 bps round trip. Rates are reported with Wilson
95% intervals. The random walk's promotion and gate-pass rates must each be at most the
5% significance level.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from remote.sandbox.market import simulated_candles  # noqa: E402
from runtime_checks.gate import GateCriteria  # noqa: E402
from runtime_checks.small import SmallBuilder  # noqa: E402
from training.evidence import EvidenceRules, direction_evidence  # noqa: E402
from training.metrics import TradingCosts, pick_threshold  # noqa: E402

DAY = 86_400
START = 1_767_225_600  # 2026-01-01
DAYS = 90
HORIZON = 1
PURGE = HORIZON + 48  # the small builder's longest look-back (48 bars)
RESAMPLES = 1000


def parts(n: int) -> list[slice]:
    cuts = [0, int(n * 0.55), int(n * 0.70), int(n * 0.85), n - HORIZON]
    return [slice(cuts[0], cuts[1] - PURGE), slice(cuts[1], cuts[2] - PURGE),
            slice(cuts[2], cuts[3] - HORIZON), slice(cuts[3] + HORIZON, cuts[4])]  # fmt: skip


def trial(args: tuple[str, int]) -> tuple[bool, bool]:
    """(promoted, passed the gate) for one market."""
    mode, seed = args
    builder = SmallBuilder()
    frame = builder.build("BTC-USD", simulated_candles("BTC-USD", START, START + DAYS * DAY, granularity=300,
                                                       seed=seed, mode=mode))  # fmt: skip
    frame = frame.dropna().reset_index(drop=True)
    x = frame.loc[:, list(builder.spec("BTC-USD").names)].to_numpy(dtype=np.float64)
    close = frame["close"].to_numpy(dtype=np.float64)
    future = np.concatenate([close[HORIZON:] / close[:-HORIZON] - 1.0, np.zeros(HORIZON)])
    up = future > 0
    train, val, test, hold = parts(len(close))
    mean, std = x[train].mean(0), x[train].std(0)
    std = np.where(std > 0, std, 1.0)
    z = (x - mean) / std
    w, b, y = np.zeros(z.shape[1]), 0.0, up[train].astype(np.float64)
    for _ in range(300):
        p = 1.0 / (1.0 + np.exp(-(z[train] @ w + b)))
        w -= 0.5 * (z[train].T @ (p - y) / len(y) + 1e-3 * w)
        b -= 0.5 * float((p - y).mean())
    p_all = 1.0 / (1.0 + np.exp(-(z @ w + b)))
    costs = TradingCosts(0.0, 0.0, 0.0) if mode == "random_walk" else TradingCosts()
    band, _ = pick_threshold(p_all[val], future[val], HORIZON, costs)
    majority = 0.75 if y.mean() >= 0.5 else 0.25
    last_up = close > np.concatenate([close[:HORIZON], close[:-HORIZON]])

    def judged(part: slice, rules: EvidenceRules) -> bool:
        n = len(close[part])
        baselines = {"majority": np.full(n, majority), "last_move": np.where(last_up[part], 0.75, 0.25)}
        e = direction_evidence(p_all[part], up[part], future[part], HORIZON, costs, band, baselines,
                               resamples=RESAMPLES)  # fmt: skip
        return all(ok for ok, _ in rules.judge(e))

    return judged(test, EvidenceRules()), judged(hold, GateCriteria().evidence_rules())


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def report(mode: str, outcomes: list[tuple[bool, bool]], seconds: float) -> None:
    n = len(outcomes)
    for label, k in (("promoted", sum(p for p, _ in outcomes)), ("passed the gate", sum(g for _, g in outcomes)),
                     ("promoted and passed the gate", sum(p and g for p, g in outcomes))):  # fmt: skip
        lo, hi = wilson(k, n)
        print(f"{mode:<11} {label:<29} {k:>5}/{n:<5} = {k / n:6.1%}  95% CI [{lo:.2%}, {hi:.2%}]")
    print(f"{mode:<11} {n} trials in {seconds:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="random-walk markets")
    parser.add_argument("--skill-trials", type=int, default=10, help="structured markets")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ok = True
    with ProcessPoolExecutor(args.workers) as pool:
        for mode, n in (("random_walk", args.trials), ("structured", args.skill_trials)):
            if n <= 0:
                continue
            began = time.perf_counter()
            outcomes = list(pool.map(trial, [(mode, 1000 + i) for i in range(n)], chunksize=4))
            report(mode, outcomes, time.perf_counter() - began)
            if mode == "random_walk":
                ok &= sum(p for p, _ in outcomes) / n <= 0.05 and sum(g for _, g in outcomes) / n <= 0.05
            else:
                ok &= sum(p and g for p, g in outcomes) > 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
