"""Made-up coins for the conformance test and the benches: the real file contract, shared factors.

Each coin's features load on two hidden factors (``f0..f2`` on the first, ``f3, f4`` on
the second, the rest noise), so a PCA keeps the factors in its first components. With
``signal`` the next move of a coin leans on the sign of the first factor; without it the
close is a random walk. One coin carries an extra feature, so the encoder is fitted on
the names the coins share (`training.families.gbm.encoder.common_names`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from training.dataset import load_symbol_dataset
from training.families.base import FitJob
from training.families.gbm.costs import costs_from_book, costs_section
from training.families.gbm.encoder import common_names, fit_encoder
from training.families.gbm.params import GbmParams
from training.families.lstm.synthetic import synthetic_frame, write_synthetic_feature_file

COINS = ("BTC-USD", "ETH-USD", "SOL-USD")


def factor_frame(rows: int, n_features: int, *, seed: int, signal: float) -> Any:
    """A feature frame whose features load on two factors and whose moves lean on the first."""
    frame = synthetic_frame(rows, n_features, seed=seed, signal=0.0)
    rng = np.random.default_rng(seed + 7919)
    factors = rng.standard_normal((rows, 2))
    loads = [0, 0, 0, 1, 1]
    for i in range(n_features):
        noise = rng.standard_normal(rows)
        frame[f"f{i}"] = factors[:, loads[i]] + 0.4 * noise if i < len(loads) else noise
    moves = 0.002 * (signal * np.sign(np.roll(factors[:, 0], 1)) + rng.standard_normal(rows))
    moves[0] = 0.0
    close = 100.0 * np.exp(np.cumsum(moves))
    frame["open"], frame["close"] = close, close
    frame["high"], frame["low"] = close * 1.001, close * 0.999
    return frame


def synthetic_book(mid: float = 100.0, half_spread: float = 0.001, depth: float = 50.0) -> dict[str, Any]:
    """A deep level-2 book in Coinbase's shape around ``mid``."""
    bids = [[f"{mid - half_spread - i * 0.002:.4f}", f"{depth}", 3] for i in range(20)]
    asks = [[f"{mid + half_spread + i * 0.002:.4f}", f"{depth}", 3] for i in range(20)]
    return {"bids": bids, "asks": asks, "sequence": 1}


def write_coins(
    folder: Path, coins: Sequence[str], rows: int, *, seed: int, signal: float, extra_on_first: bool = True
) -> dict[str, Path]:
    paths = {}
    for i, coin in enumerate(coins):
        n = 7 if (extra_on_first and i == 0) else 6
        frame = factor_frame(rows, n, seed=seed * 101 + i, signal=signal)
        paths[coin] = write_synthetic_feature_file(folder, coin, rows, n, frame=frame)
    return paths


def fit_shared_encoder(paths: dict[str, Path], params: GbmParams, folder: Path) -> Path:
    """Fit and save the encoder over ``paths`` (one coin in memory at a time)."""
    from training.features.io import read_feature_meta

    names = common_names(read_feature_meta(p).feature_names for p in paths.values())
    datasets = (load_symbol_dataset(p, params.split) for p in paths.values())
    fit_encoder(datasets, names, params.n_components).save(folder)
    return folder


def synthetic_engine_job(root: Path, *, skill: bool, seed: int = 0, rows: int = 3000) -> FitJob:
    root = Path(root)
    raw_params = {
        "split": {"horizon": 1, "longest_feature_window": 10},
        "head": {"rounds": 120, "learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 40, "early_stopping": 20},
        "encoder": {"n_components": 3},
        "gates": {"min_trades": 30},
    }
    params = GbmParams.from_mapping(raw_params)
    paths = write_coins(root / "features", COINS, rows, seed=seed, signal=1.0 if skill else 0.0)
    encoder = fit_shared_encoder(paths, params, root / "encoder")
    measured = [costs_from_book(c, synthetic_book(), fee_bps=0.5, notional=1000.0) for c in COINS]
    costs = costs_section(measured, {"fee_bps": 0.5, "spread_bps": 0.2, "slippage_bps": 0.1})
    return FitJob(
        "gbm",
        COINS[0],
        {"features": paths[COINS[0]], "encoder": encoder},
        root / "work",
        params=raw_params,
        costs=costs,
        seed=seed,
    )
