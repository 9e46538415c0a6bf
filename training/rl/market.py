"""One symbol's market for the trading environment: scaled features, prices, a purged split.

`load_market` reads a feature file (`training.features.io`) the way the direction models
do (`training.dataset`): the scaler is fitted on the training part only, and the parts are
chronological and purged (train | gap | validation | gap | test). A decision at row ``t``
fills at ``open[t + 1]`` and is held until ``open[t + 2]``, so its label horizon is two
bars: the purge gap covers it and the longest feature window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from training.dataset import Scaler, WindowSpec, split_ends, verify_feature_hash
from training.errors import FeatureFileProblem, NonFiniteValues, NotEnoughData
from training.features.io import FeatureFileError, read_feature_file

HORIZON = 2
"""Bars from a decision to the end of the bar it is paid on (fill at t+1, held to t+2)."""
REQUIRED_COLUMNS = ("open", "close")
PARTS = ("train", "val", "test")


@dataclass
class Market:
    """Scaled features and prices of one symbol, with the decision rows of each part."""

    symbol: str
    feature_names: tuple[str, ...]
    feature_hash: str
    features: np.ndarray
    """Scaled, float32, rows x features."""
    open: np.ndarray
    close: np.ndarray
    parts: Mapping[str, np.ndarray]
    """Part name -> the rows a decision may be taken at (train, val, test)."""
    scaler: Scaler
    window: int
    timestamps: np.ndarray = field(repr=False, default_factory=lambda: np.array([]))

    def __post_init__(self) -> None:
        opens = np.asarray(self.open, dtype=np.float64)
        # held[t]: log return of holding from the fill at open[t+1] to open[t+2].
        held = np.zeros(len(opens), dtype=np.float64)
        if len(opens) > 2:
            held[:-2] = np.log(opens[2:] / opens[1:-1])
        self.held_log_return = held

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    def rows(self, part: str) -> np.ndarray:
        try:
            return self.parts[part]
        except KeyError:
            raise NotEnoughData(f"unknown part {part!r} (known: {', '.join(PARTS)})") from None


def load_market(
    path: Path,
    *,
    window: int = 16,
    longest_feature_window: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    scaler: Scaler | None = None,
    expected_hash: str | None = None,
    min_rows_per_part: int = 0,
) -> Market:
    """The market in feature file ``path``; bad files raise one-line `TrainingInputError`s.

    ``scaler`` (a saved model's) replaces the one fitted on the training part, so a model
    sees the same numbers it was trained on; ``min_rows_per_part`` refuses a file too short
    for one episode.
    """
    path = Path(path)
    try:
        frame, meta = read_feature_file(path)
    except FeatureFileError as exc:
        raise FeatureFileProblem(str(exc)) from exc
    missing = [c for c in (*REQUIRED_COLUMNS, *meta.feature_names) if c not in frame.columns]
    if missing:
        raise FeatureFileProblem(
            f"{path} lacks the column(s) {', '.join(missing[:5])}; rebuild features (console features build)"
        )
    if not meta.feature_names:
        raise NotEnoughData(f"{path} names no features; rebuild features (console features build)")
    verify_feature_hash(path, meta.feature_hash, expected_hash=expected_hash)
    raw = frame.loc[:, list(meta.feature_names)].to_numpy(dtype=np.float64)
    opens = frame["open"].to_numpy(dtype=np.float64)
    close = frame["close"].to_numpy(dtype=np.float64)
    if not np.isfinite(raw).all():
        raise NonFiniteValues(f"{path} has NaN or infinite feature values; fix the feature build")
    if not (np.isfinite(opens).all() and np.isfinite(close).all()) or (opens <= 0).any() or (close <= 0).any():
        raise NonFiniteValues(f"{path} has NaN, infinite or non-positive prices; refetch the candles")
    spec = WindowSpec(window, HORIZON, longest_feature_window, val_fraction, test_fraction)
    spec.validate()
    train, val, test = split_ends(len(frame), spec, where=str(path))
    shortest = min(len(train), len(val), len(test))
    if shortest < min_rows_per_part:
        raise NotEnoughData(
            f"{path} has {len(frame)} rows: its shortest part has {shortest} decision rows, fewer than one "
            f"episode of {min_rows_per_part}; fetch more history or shorten the episode"
        )
    if scaler is None:
        scaler = Scaler.fit(raw[: train[-1] + 1])
    elif len(scaler.mean) != raw.shape[1]:
        raise FeatureFileProblem(f"{path} has {raw.shape[1]} features but the model was trained on {len(scaler.mean)}")
    return Market(
        symbol=meta.symbol,
        feature_names=tuple(meta.feature_names),
        feature_hash=meta.feature_hash,
        features=scaler.transform(raw),
        open=opens,
        close=close,
        parts={"train": train, "val": val, "test": test},
        scaler=scaler,
        window=window,
        timestamps=_naive_utc(frame["timestamp"]) if "timestamp" in frame else np.array([]),
    )


def _naive_utc(column: Any) -> np.ndarray:
    """Timestamps as naive UTC datetime64 (what the judge and the report compute with)."""
    return pd.to_datetime(column, utc=True).dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
