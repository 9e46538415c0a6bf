"""Check fetched higher timeframes (5m, 15m, 1h) against one-minute candles resampled.

A higher-timeframe candle is compared only when the one-minute data covers its whole
period (so a fetch that stopped half way does not show up as a disagreement). Prices are
compared to 1e-9 relative, volume to 1e-6 relative (exchanges round volumes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from training.data.market import check_timeframe, iso, unix_seconds
from training.data.store import CandleStore


def resample_candles(minutes: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Candles of ``timeframe`` from one-minute candles: first open, max high, min low,
    last close, summed volume; a period without any minute has no candle."""
    step = check_timeframe(timeframe)
    t = unix_seconds(minutes["timestamp"])
    if len(t) == 0:
        return minutes.iloc[:0].copy()
    bucket = t // step * step
    starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    ends = np.concatenate([starts[1:], [len(t)]]) - 1
    out = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(bucket[starts], unit="s", utc=True).astype("datetime64[ns, UTC]"),
            "open": minutes["open"].to_numpy()[starts],
            "high": np.maximum.reduceat(minutes["high"].to_numpy(), starts),
            "low": np.minimum.reduceat(minutes["low"].to_numpy(), starts),
            "close": minutes["close"].to_numpy()[ends],
            "volume": np.add.reduceat(minutes["volume"].to_numpy(), starts),
        }
    )
    return out


@dataclass(frozen=True)
class ResampleCheck:
    """How a fetched timeframe agrees with resampled one-minute candles."""

    symbol: str
    timeframe: str
    compared: int
    disagreements: list[dict] = field(default_factory=list)
    """Up to 20 examples: time, column, fetched, resampled."""
    disagreeing: int = 0

    @property
    def ok(self) -> bool:
        return self.disagreeing == 0

    def summary(self) -> str:
        if self.ok:
            return f"{self.symbol} {self.timeframe}: {self.compared} candles agree with resampled 1m"
        return (
            f"{self.symbol} {self.timeframe}: {self.disagreeing} of {self.compared} candles disagree with resampled 1m"
        )


def check_against_minutes(store: CandleStore, symbol: str, timeframe: str) -> ResampleCheck:
    """Compare the stored ``timeframe`` candles with the stored 1m candles resampled."""
    step = check_timeframe(timeframe)
    fetched = store.read_candles(symbol, timeframe)
    minutes = store.read_candles(symbol, "1m")
    covered = store.coverage(symbol, "1m")
    t = unix_seconds(fetched["timestamp"])
    whole = np.zeros(len(t), dtype=bool)
    for a, b in covered:
        whole |= (t >= a) & (t + step <= b)
    ours = resample_candles(minutes, timeframe).set_index("timestamp")
    theirs = fetched[whole].set_index("timestamp")
    common = theirs.index.intersection(ours.index)
    missing = theirs.index.difference(ours.index)
    examples: list[dict] = []
    bad_rows = set(missing)
    for ts in missing[:5]:
        examples.append(
            {"time": iso(int(ts.timestamp())), "column": "candle", "fetched": "present", "resampled": "absent"}
        )
    for col, tol in (("open", 1e-9), ("high", 1e-9), ("low", 1e-9), ("close", 1e-9), ("volume", 1e-6)):
        a = theirs.loc[common, col].to_numpy()
        b = ours.loc[common, col].to_numpy()
        off = np.flatnonzero(~np.isclose(a, b, rtol=tol, atol=0.0))
        bad_rows.update(common[off])
        for i in off[: max(0, 20 - len(examples))]:
            examples.append(
                {
                    "time": iso(int(common[i].timestamp())),
                    "column": col,
                    "fetched": float(a[i]),
                    "resampled": float(b[i]),
                }
            )
    return ResampleCheck(symbol, timeframe, len(common) + len(missing), examples, len(bad_rows))
