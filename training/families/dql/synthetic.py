"""Synthetic markets for the trading agent's tests and benches: the real file contract.

The move from bar ``t + 1``'s open to bar ``t + 2``'s open (what a decision at ``t`` is paid
on) leans on the sign of feature ``f0`` at bar ``t`` by ``signal``; with ``signal=0`` the
prices are a pure random walk and nothing can be learnt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training.families.lstm.synthetic import write_synthetic_feature_file


def market_frame(rows: int, n_features: int = 3, *, seed: int = 0, signal: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((rows, n_features))
    moves = 0.002 * (signal * np.sign(feats[:, 0]) + rng.standard_normal(rows))
    opens = np.empty(rows)
    opens[:2] = 100.0
    opens[2:] = 100.0 * np.exp(np.cumsum(moves[: rows - 2]))
    # The close of bar t is not the next open: a small gap, so a fill is never at a seen price.
    close = np.append(opens[1:], opens[-1]) * np.exp(0.0003 * rng.standard_normal(rows))
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=rows, freq="5min", tz="UTC"),
            "open": opens,
            "high": np.maximum(opens, close) * 1.0005,
            "low": np.minimum(opens, close) * 0.9995,
            "close": close,
            "volume": rng.uniform(1, 10, rows),
            "session": "us",
            "volatility_regime": "normal",
        }
    )
    for i in range(n_features):
        frame[f"f{i}"] = feats[:, i]
    return frame


def write_market_file(
    features_dir: Path, symbol: str, rows: int, n_features: int = 3, *, seed: int = 0, signal: float = 1.0
) -> Path:
    """Write ``<features_dir>/<symbol>.parquet`` over `market_frame`."""
    frame = market_frame(rows, n_features, seed=seed, signal=signal)
    return write_synthetic_feature_file(features_dir, symbol, rows, n_features, frame=frame)
