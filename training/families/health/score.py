"""What the health model's outputs mean, in plain NumPy (the runtime's fallback needs no torch).

- ``health_score`` (0-1): where the asset's *expected next-21-day risk-adjusted return*
  stands among the training part's rows. The autoencoder's latent vector (what the
  asset's ten features say, compressed) goes through a ridge-regression read-out fit on
  the training part to each day's cross-sectional rank of that forward return; the score
  is the read-out's empirical quantile among the training rows (`ScoreScale`). 0.5 is a
  typical asset, near 1 one expected to do best per unit of risk.
- ``vol_bucket``: ``low``/``med``/``high`` by the 21-day volatility against the training
  part's terciles (`VolBuckets`; edges fit on training rows only).
- ``behavior``: ``momentum`` when the 5-, 21- and 63-day returns share a sign (the move
  keeps going), ``mean_reversion`` when the 5-day return opposes both longer ones (a
  pull back against the trend), ``mixed`` otherwise.
- ``latent``: the 16 floats of the encoder (the VAE's mean).

The **rule baseline** scores an asset by the rank of its 63-day relative strength among
the assets of the same day (0-1); it is what the model must beat, and the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

LATENT_SIZE = 16
QUANTILES = 101
FORWARD_DAYS = 21
BUCKETS = ("low", "med", "high")


@dataclass(frozen=True)
class ScoreScale:
    """The read-out's training quantiles: a value's score is its interpolated quantile."""

    points: tuple[float, ...]

    @classmethod
    def fit(cls, values: np.ndarray) -> "ScoreScale":
        return cls(tuple(float(v) for v in np.quantile(np.asarray(values, float), np.linspace(0, 1, QUANTILES))))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        points = np.asarray(self.points)
        # Ties in the points (a flat read-out) give the middle of their range.
        low = np.interp(values, points, np.linspace(0, 1, len(points)), left=0.0, right=1.0)
        high = 1.0 - np.interp(-np.asarray(values), -points[::-1], np.linspace(0, 1, len(points)), left=0.0, right=1.0)
        return np.clip((low + high) / 2.0, 0.0, 1.0)


@dataclass(frozen=True)
class VolBuckets:
    low_high: float
    med_high: float

    @classmethod
    def fit(cls, vol: np.ndarray) -> "VolBuckets":
        a, b = np.quantile(np.asarray(vol, float), [1 / 3, 2 / 3])
        return cls(float(a), float(b))

    def __call__(self, vol: np.ndarray) -> list[str]:
        idx = np.searchsorted([self.low_high, self.med_high], np.asarray(vol, float), side="right")
        return [BUCKETS[i] for i in idx]


def behaviour(r5: np.ndarray, r21: np.ndarray, r63: np.ndarray) -> list[str]:
    s5, s21, s63 = np.sign(r5), np.sign(r21), np.sign(r63)
    momentum = (s5 != 0) & (s5 == s21) & (s21 == s63)
    reversion = (s5 != 0) & (s21 != 0) & (s5 == -s21) & (s5 == -s63)
    return ["momentum" if m else "mean_reversion" if r else "mixed" for m, r in zip(momentum, reversion, strict=True)]


def relative_strength_rank(frame: pd.DataFrame) -> np.ndarray:
    """The rule baseline: each row's rank of ``rel_strength_63d`` among its day's rows, 0-1
    (0.5 when the day has one asset)."""
    ranks = frame.groupby("date")["rel_strength_63d"].rank(method="average")
    counts = frame.groupby("date")["rel_strength_63d"].transform("count")
    return np.where(counts > 1, (ranks - 1) / (counts - 1).clip(lower=1), 0.5).astype(np.float64)


def health_output(score: float, bucket: str, behavior: str, latent: Sequence[float]) -> dict[str, Any]:
    """The seed's output: ``{"health_score", "vol_bucket", "behavior", "latent": [16]}``."""
    return {
        "health_score": round(float(score), 6),
        "vol_bucket": bucket,
        "behavior": behavior,
        "latent": [round(float(x), 6) for x in latent],
    }


def _rows(rows: Any) -> pd.DataFrame:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    if "date" not in frame:
        frame = frame.assign(date=0)
    return frame


def last_day(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the newest day (the day a runtime scores)."""
    return frame.loc[frame["date"] == frame["date"].max()]


@dataclass(frozen=True)
class RuleHealthPredictor:
    """The fallback: the relative-strength rank as the score, the documented buckets and
    behaviour, sixteen zeros as the latent. ``predict`` takes asset-feature rows and answers
    ``{symbol: output}`` for the newest day's rows."""

    buckets: VolBuckets = field(default_factory=lambda: VolBuckets(0.15, 0.30))
    name: str = "baseline: 63-day relative-strength rank"
    trained: bool = False

    def predict(self, rows: Any) -> dict[str, dict[str, Any]]:
        frame = last_day(_rows(rows)).reset_index(drop=True)
        score = relative_strength_rank(frame)
        bucket = self.buckets(frame["vol_21d"].to_numpy())
        kind = behaviour(*(frame[f"return_{k}d"].to_numpy() for k in (5, 21, 63)))
        zero = [0.0] * LATENT_SIZE
        symbols = frame["symbol"] if "symbol" in frame else pd.Series(range(len(frame))).astype(str)
        return {
            str(sym): health_output(s, b, k, zero) for sym, s, b, k in zip(symbols, score, bucket, kind, strict=True)
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> "RuleHealthPredictor":
        if config and "vol_buckets" in config:
            return cls(VolBuckets(*map(float, config["vol_buckets"])))
        return cls()
