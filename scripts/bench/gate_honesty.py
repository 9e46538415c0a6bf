"""How often the pre-live gate passes an honestly fitted model on the simulator, per mode.

Run by hand: ``.venv/bin/python scripts/bench/gate_honesty.py [SEEDS]``. For each seed and
mode it fits the same logistic-regression model as the honesty tests on 60 days before a
cutoff, scores the 60 days after with `runtime_checks.dryrun.evaluate`, and applies
`runtime_checks.gate.judge_dryrun` with the default criteria (the evidence rules of
`training.evidence`) at zero fees and at the default 28 bps round trip. It also times `verify_gate` on a three-symbol models dir (what
a live runtime pays at start-up). No HTTP here: the candles come from the simulator's
generator directly, so this measures the gate, not the network.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from remote.sandbox.market import simulated_candles  # noqa: E402
from runtime_checks import gate  # noqa: E402
from runtime_checks.checks import ALIGNMENT, DRYRUN  # noqa: E402
from runtime_checks.dryrun import evaluate  # noqa: E402
from runtime_checks.small import CUTOFF, SmallBuilder, write_model  # noqa: E402
from training.metrics import TradingCosts  # noqa: E402

DAY = 86_400


def frame(mode: str, seed: int, start: int, end: int):
    b = SmallBuilder()
    f = b.build("BTC-USD", simulated_candles("BTC-USD", start, end, granularity=300, seed=seed, mode=mode))
    f = f.dropna().reset_index(drop=True)
    return f.loc[:, list(b.spec("BTC-USD").names)].to_numpy(), f["close"].to_numpy()


def fit(x: np.ndarray, close: np.ndarray):
    y = (close[1:] > close[:-1]).astype(float)
    x = x[:-1]
    mean, std = x.mean(0), x.std(0)
    z = (x - mean) / std
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(300):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        w -= 0.5 * (z.T @ (p - y) / len(y) + 1e-3 * w)
        b -= 0.5 * float((p - y).mean())
    return mean, std, w, b, y.mean() >= 0.5


def main(seeds: int) -> None:
    criteria = gate.GateCriteria()
    passing: dict | None = None
    for mode in ("structured", "random_walk"):
        passes = {"zero fees": 0, "default costs": 0}
        for seed in range(7, 7 + seeds):
            x, c = frame(mode, seed, CUTOFF - 60 * DAY, CUTOFF)
            mean, std, w, b, majority_up = fit(x, c)
            xt, ct = frame(mode, seed, CUTOFF, CUTOFF + 60 * DAY)
            p = 1 / (1 + np.exp(-np.tanh(np.tanh(((xt - mean) / std) @ w + b))))
            ends = np.arange(len(ct) - 1)
            for label, costs in (("zero fees", TradingCosts(0, 0, 0)), ("default costs", TradingCosts())):
                figures = {**evaluate(p[ends], ct, ends, 1, majority_up=majority_up, costs=costs), "trained": True}
                ok = not gate.judge_dryrun("BTC-USD", figures, criteria)
                passes[label] += ok
                passing = figures if ok and passing is None else passing
            print(f"{mode:<12} seed {seed:>2}: hit {figures['hit_rate']:.4f} p {figures['p_value']:.3g} "
                  f"last-move {figures['baseline_last_move_hit_rate']:.4f} majority {figures['baseline_majority_hit_rate']:.4f}")
        print(f"{mode}: gate passes {passes['zero fees']}/{seeds} at zero fees, {passes['default costs']}/{seeds} at default costs")

    with tempfile.TemporaryDirectory() as tmp:
        root, key = Path(tmp) / "models", Path(tmp) / "gate.key"
        spec = SmallBuilder().spec("BTC-USD")
        symbols = ["BTC-USD", "ETH-USD", "SOL-USD"]
        for s in symbols:
            write_model(root, s, spec.names, spec.hash)
        if passing is None:
            print("no seed passed the gate: verify_gate not timed")
            return
        results = [r for s in symbols for r in (ALIGNMENT.result(s, True, "ok"), DRYRUN.result(s, True, "ok", passing))]
        gate.record_gate(root, results, symbols=symbols, feature_hashes={s: spec.hash for s in symbols}, key_file=key)
        t = time.perf_counter()
        for _ in range(50):
            gate.verify_gate(root, key_file=key, feature_hash_of=lambda s: spec.hash)
        print(f"verify_gate, 3 symbols: {(time.perf_counter() - t) / 50 * 1000:.2f} ms per call")


if __name__ == "__main__":
    os.environ.setdefault("RC_GATE_KEY_FILE", os.devnull)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
