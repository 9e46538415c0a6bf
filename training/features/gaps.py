"""The gap policy: how missing candles are treated, one rule for training and the live path.

Features and labels are defined in time, not rows. Candles go onto their time grid first:

- a hole of at most ``FILL_TOLERANCE_BARS`` bars is **filled**: each missing candle is the
  previous close as open, high, low and close, with zero volume (nothing traded that we
  saw; the price did not move that we know of);
- a longer hole is **not bridged**: the candles on either side are separate *segments*,
  and every feature is computed within one segment (`training.features.build` builds each
  segment on its own, so its warm-up rows are NaN and are not samples). No indicator, no
  return and no higher-timeframe candle reaches across the hole.

Labels and windows are then checked in time by `time_contiguous`: a window is a sample
only when its rows are consecutive grid times, and a label "``horizon`` bars ahead" is
the close exactly ``horizon`` bars later in time, or no label.

`runtime_checks.inputs.fresh_candles` fills with `fill_small_holes` (and refuses a feed
with a longer hole); `build_features` segments with `segments`. So the training file and
the runtime builder cannot treat a hole differently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.data.market import unix_seconds

FILL_TOLERANCE_BARS = 10
"""Holes up to this many missing bars are filled with the previous close; longer ones split."""


def bar_seconds(timestamps: object) -> int:
    """Seconds per bar: the most common step between timestamps (60 when it cannot tell)."""
    t = unix_seconds(timestamps)
    if len(t) < 2:
        return 60
    steps, counts = np.unique(np.diff(t), return_counts=True)
    return int(steps[np.argmax(counts)])


def fill_small_holes(frame: pd.DataFrame, granularity: int, tolerance_bars: int = FILL_TOLERANCE_BARS) -> pd.DataFrame:
    """``frame``'s candles with every hole of at most ``tolerance_bars`` filled (previous close,
    zero volume); longer holes stay holes. Other columns of filled rows are NaN."""
    if len(frame) < 2:
        return frame.reset_index(drop=True)
    t = unix_seconds(frame["timestamp"])
    missing = np.diff(t) // granularity - 1
    small = (missing > 0) & (missing <= tolerance_bars)
    if not small.any():
        return frame.reset_index(drop=True)
    extra = np.concatenate([t[i] + granularity * np.arange(1, int(missing[i]) + 1) for i in np.flatnonzero(small)])
    stamps = pd.to_datetime(extra, unit="s", utc=True).astype(frame["timestamp"].dtype)
    full = pd.concat([frame, pd.DataFrame({"timestamp": stamps})], ignore_index=True)
    full = full.sort_values("timestamp", kind="mergesort").reset_index(drop=True)
    close = full["close"].ffill()
    for column in ("open", "high", "low"):
        full[column] = full[column].fillna(close)
    full["close"] = close
    full["volume"] = full["volume"].fillna(0.0)
    return full


def segments(frame: pd.DataFrame, granularity: int) -> list[tuple[int, int]]:
    """``[start, stop)`` row ranges of ``frame`` with no hole inside (after `fill_small_holes`,
    a hole left is longer than the tolerance)."""
    t = unix_seconds(frame["timestamp"])
    if len(t) == 0:
        return []
    breaks = np.flatnonzero(np.diff(t) != granularity) + 1
    bounds = [0, *breaks.tolist(), len(t)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def time_contiguous(timestamps: object, back: int, ahead: int, granularity: int | None = None) -> np.ndarray:
    """Per row ``t``: rows ``t - back .. t + ahead`` exist and are exactly consecutive grid times.

    ``back = window - 1`` and ``ahead = horizon`` says "this window is a sample and its
    label is the close ``horizon`` bars later in time". Rows too near either end are False.
    """
    t = unix_seconds(timestamps)
    n = len(t)
    ok = np.zeros(n, dtype=bool)
    if n == 0:
        return ok
    step = granularity or bar_seconds(timestamps)
    # Consecutive steps: a row's run of on-grid predecessors tells how far back is contiguous.
    good = np.concatenate([[False], np.diff(t) == step])
    idx = np.arange(n)
    # Contiguous steps ending at each row: the distance to the last row that broke the grid.
    run = idx - np.maximum.accumulate(np.where(good, 0, idx))
    lo_ok = idx - back >= 0
    hi_ok = idx + ahead < n
    ok[lo_ok & hi_ok] = True
    ends = np.minimum(idx + ahead, n - 1)
    # The span from t - back to t + ahead is contiguous iff the run at t + ahead covers it.
    ok &= run[ends] >= back + ahead
    return ok
