"""Synthetic feature files for tests and benchmarks: the real file contract, made-up prices.

The close follows a random walk whose next move leans on the sign of a lagged feature,
so a model can learn something and the after-cost gates have something to judge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training.features.io import FeatureFileMeta, feature_hash, write_feature_file

SPEC_VERSION = "synthetic-1"


def synthetic_definitions(n_features: int) -> list[dict]:
    """Feature definitions whose hash stands in for a real spec's."""
    return [{"name": f"f{i}", "kind": "synthetic", "period": 5 + i} for i in range(n_features)]


def synthetic_hash(n_features: int) -> str:
    """The feature hash a synthetic file with ``n_features`` features carries."""
    return feature_hash(SPEC_VERSION, synthetic_definitions(n_features))


def synthetic_frame(rows: int, n_features: int = 5, *, seed: int = 0, signal: float = 0.6) -> pd.DataFrame:
    """A feature frame (timestamp, OHLCV, categoricals, features f0..) of ``rows`` 5-minute bars."""
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((rows, n_features))
    # The next bar's move leans on f0 of this bar: learnable, but noisy.
    moves = 0.002 * (signal * np.sign(np.roll(feats[:, 0], 1)) + rng.standard_normal(rows))
    moves[0] = 0.0
    close = 100.0 * np.exp(np.cumsum(moves))
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=rows, freq="5min", tz="UTC"),
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volume": rng.uniform(1, 10, rows),
            "session": "us",
            "volatility_regime": "normal",
        }
    )
    for i in range(n_features):
        frame[f"f{i}"] = feats[:, i]
    return frame


def write_synthetic_feature_file(
    features_dir: Path,
    symbol: str,
    rows: int,
    n_features: int = 5,
    *,
    seed: int = 0,
    signal: float = 0.6,
    stored_hash: str | None = None,
    frame: pd.DataFrame | None = None,
    spec_version: str = SPEC_VERSION,
) -> Path:
    """Write ``<features_dir>/<symbol>.parquet``; ``stored_hash`` forges the hash (for refusal tests)."""
    frame = synthetic_frame(rows, n_features, seed=seed, signal=signal) if frame is None else frame
    names = tuple(f"f{i}" for i in range(n_features))
    meta = FeatureFileMeta(
        symbol=symbol,
        spec_version=spec_version,
        feature_hash=stored_hash or synthetic_hash(n_features),
        feature_names=names,
        rows=len(frame),
    )
    path = Path(features_dir) / f"{symbol}.parquet"
    write_feature_file(path, frame, meta)
    return path
