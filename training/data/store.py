"""The market-data store: parquet files under one data directory.

Layout::

    DATA/candles/<SYMBOL>/<TF>.parquet          timestamp (UTC), open, high, low, close, volume
    DATA/candles/<SYMBOL>/<TF>.coverage.json    the time ranges already asked of the exchange
    DATA/fundamentals/<SYMBOL>.parquet          timestamp, price, market_cap, total_volume, ath, ath_time

Every write goes to a temporary file in the same folder and is renamed over the old one,
so a reader (or a crash) sees the old file or the new one, never half. Merging new
candles into a file keeps it sorted and free of duplicates (the newest answer wins).

The coverage file is what makes gaps visible instead of hidden: a minute inside a covered
range with no candle is a gap (on Coinbase, usually a minute without trades), reported
by `gap_report`; a range never fetched is simply not covered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from training.atomic import atomic_path
from training.data.market import (
    CANDLE_COLUMNS,
    FUNDAMENTAL_COLUMNS,
    check_symbol,
    check_timeframe,
    iso,
    unix_seconds,
)
from training.errors import BadMarketData

Interval = tuple[int, int]
"""[start, end) in unix seconds."""


def merge_intervals(intervals: list[Interval]) -> list[Interval]:
    """Sorted, non-overlapping union of [start, end) intervals (touching ones joined)."""
    out: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in intervals if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def subtract_intervals(want: Interval, have: list[Interval]) -> list[Interval]:
    """The parts of ``want`` not covered by ``have``."""
    a, b = want
    out: list[Interval] = []
    for c, d in merge_intervals(have):
        if d <= a or c >= b:
            continue
        if c > a:
            out.append((a, c))
        a = max(a, d)
        if a >= b:
            break
    if a < b:
        out.append((a, b))
    return out


@dataclass(frozen=True)
class Gap:
    """A run of missing candles inside a covered range."""

    start: int
    end: int
    """Exclusive: the open time of the next candle present (or the coverage end)."""
    candles: int

    def describe(self) -> str:
        return f"{iso(self.start)} .. {iso(self.end)} ({self.candles} candles)"


@dataclass(frozen=True)
class GapReport:
    """What a covered range holds and lacks, for one symbol and timeframe."""

    symbol: str
    timeframe: str
    covered: list[Interval]
    expected: int
    present: int
    gaps: list[Gap] = field(default_factory=list)

    @property
    def missing(self) -> int:
        return self.expected - self.present

    @property
    def longest(self) -> Gap | None:
        return max(self.gaps, key=lambda g: g.candles, default=None)

    def summary(self) -> str:
        if not self.covered:
            return f"{self.symbol} {self.timeframe}: nothing fetched yet"
        span = f"{iso(self.covered[0][0])} .. {iso(self.covered[-1][1])}"
        longest = self.longest
        tail = f", longest {longest.describe()}" if longest else ""
        return (
            f"{self.symbol} {self.timeframe}: {self.present}/{self.expected} candles over {span}, "
            f"{self.missing} missing in {len(self.gaps)} gaps{tail}"
        )


class CandleStore:
    """Candles and fundamentals for any number of symbols under ``data_dir``."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)

    # -- paths
    def candles_path(self, symbol: str, timeframe: str) -> Path:
        check_symbol(symbol)
        check_timeframe(timeframe)
        return self.data_dir / "candles" / symbol / f"{timeframe}.parquet"

    def coverage_path(self, symbol: str, timeframe: str) -> Path:
        return self.candles_path(symbol, timeframe).with_suffix(".coverage.json")

    def fundamentals_path(self, symbol: str) -> Path:
        return self.data_dir / "fundamentals" / f"{check_symbol(symbol)}.parquet"

    def symbols(self) -> list[str]:
        """Symbols with at least one candle file, sorted."""
        root = self.data_dir / "candles"
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.parquet")))

    def timeframes(self, symbol: str) -> list[str]:
        from training.data.market import TIMEFRAMES

        return [tf for tf in TIMEFRAMES if self.candles_path(symbol, tf).exists()]

    # -- candles
    def read_candles(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """All stored candles, oldest first (an empty frame if none were fetched)."""
        path = self.candles_path(symbol, timeframe)
        if not path.exists():
            return empty_candles()
        return _read_parquet(path, CANDLE_COLUMNS)

    def merge_candles(self, symbol: str, timeframe: str, new: pd.DataFrame, covered: Sequence[Interval] = ()) -> int:
        """Add ``new`` candles (and the ranges they answer for); returns how many rows were added."""
        path = self.candles_path(symbol, timeframe)
        old = self.read_candles(symbol, timeframe)
        new = normalise_candles(new)
        before = len(old)
        if len(new):
            frame = pd.concat([old, new], ignore_index=True) if before else new
            frame = frame.drop_duplicates("timestamp", keep="last").sort_values("timestamp", kind="stable")
            frame = frame.reset_index(drop=True)
            _write_parquet_atomic(path, frame)
            added = len(frame) - before
        else:
            added = 0
        if covered:
            self._write_coverage(symbol, timeframe, merge_intervals([*self.coverage(symbol, timeframe), *covered]))
        return added

    def replace_candles(self, symbol: str, timeframe: str, frame: pd.DataFrame, covered: list[Interval]) -> None:
        """Write ``frame`` as the whole file (used by CSV import of a validated frame)."""
        _write_parquet_atomic(self.candles_path(symbol, timeframe), normalise_candles(frame))
        self._write_coverage(symbol, timeframe, merge_intervals(list(covered)))

    def coverage(self, symbol: str, timeframe: str) -> list[Interval]:
        """The ranges already fetched (merged, oldest first)."""
        path = self.coverage_path(symbol, timeframe)
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text())
            return merge_intervals([(int(a), int(b)) for a, b in data["covered"]])
        except (ValueError, KeyError, TypeError):
            raise BadMarketData(f"{path} is not a valid coverage file (delete it and fetch again)") from None

    def _write_coverage(self, symbol: str, timeframe: str, covered: list[Interval]) -> None:
        path = self.coverage_path(symbol, timeframe)
        body = json.dumps({"symbol": symbol, "timeframe": timeframe, "covered": [list(c) for c in covered]}, indent=1)
        _write_bytes_atomic(path, body.encode())

    def gap_report(self, symbol: str, timeframe: str) -> GapReport:
        """Missing candles inside the covered ranges."""
        step = check_timeframe(timeframe)
        covered = self.coverage(symbol, timeframe)
        times = unix_seconds(self.read_candles(symbol, timeframe)["timestamp"])
        expected = present = 0
        gaps: list[Gap] = []
        for a, b in covered:
            first = -(-a // step) * step
            grid_n = max(0, -(-(b - first) // step))
            expected += grid_n
            inside = times[(times >= first) & (times < b)]
            present += len(inside)
            # Consecutive present candles more than one step apart bound a gap.
            bounds = np.concatenate([[first - step], inside, [first + grid_n * step]])
            jumps = np.diff(bounds) // step - 1
            for i in np.flatnonzero(jumps > 0):
                gaps.append(Gap(int(bounds[i] + step), int(bounds[i + 1]), int(jumps[i])))
        return GapReport(symbol, timeframe, covered, expected, present, gaps)

    # -- fundamentals
    def read_fundamentals(self, symbol: str) -> pd.DataFrame:
        """Stored CoinGecko data (empty frame if none)."""
        path = self.fundamentals_path(symbol)
        if not path.exists():
            return pd.DataFrame({c: pd.Series(dtype="float64") for c in FUNDAMENTAL_COLUMNS}).astype(
                {"timestamp": "datetime64[ns, UTC]", "ath_time": "datetime64[ns, UTC]"}
            )
        return _read_parquet(path, FUNDAMENTAL_COLUMNS)

    def merge_fundamentals(self, symbol: str, new: pd.DataFrame) -> int:
        """Add CoinGecko rows (newest answer wins); the all-time high columns take the newest."""
        old = self.read_fundamentals(symbol)
        before = len(old)
        frame = (
            pd.concat([old, new[list(FUNDAMENTAL_COLUMNS)]], ignore_index=True)
            if before
            else new[list(FUNDAMENTAL_COLUMNS)]
        )
        frame = frame.drop_duplicates("timestamp", keep="last").sort_values("timestamp").reset_index(drop=True)
        if len(new):
            frame["ath"] = float(new["ath"].iloc[-1])
            frame["ath_time"] = new["ath_time"].iloc[-1]
        _write_parquet_atomic(self.fundamentals_path(symbol), frame)
        return len(frame) - before


def empty_candles() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in CANDLE_COLUMNS})
    return frame.astype({"timestamp": "datetime64[ns, UTC]"})


def normalise_candles(frame: pd.DataFrame) -> pd.DataFrame:
    """The store's column order and dtypes (timestamp datetime64[ns, UTC], float64 OHLCV)."""
    out = frame[list(CANDLE_COLUMNS)].copy()
    out["timestamp"] = out["timestamp"].astype("datetime64[ns, UTC]")
    for c in CANDLE_COLUMNS[1:]:
        out[c] = out[c].astype("float64")
    return out.reset_index(drop=True)


def _read_parquet(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        text = str(exc).strip().splitlines()
        raise BadMarketData(
            f"{path} is not a readable parquet file ({text[0] if text else type(exc).__name__}); "
            "delete it and fetch or import again"
        ) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BadMarketData(f"{path} lacks columns {', '.join(missing)}; delete it and fetch again")
    return frame[list(columns)]


def _write_parquet_atomic(path: Path, frame: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _write_bytes_atomic(path: Path, body: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(body)
