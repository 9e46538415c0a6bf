"""Import real candle files (CSV) into the store.

Detects the usual layouts: a time column named ``open_time``, ``timestamp``, ``time``,
``date`` or ``datetime`` (any case), holding unix seconds, unix milliseconds or ISO
times; price columns ``open``, ``high``, ``low``, ``close`` and ``volume`` in any order
(other columns are ignored). Rows must be strictly increasing in time, on the
timeframe's grid, with positive prices and ``low <= open, close <= high``; anything else
is refused with one line naming the first bad row, and the store is left untouched.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.market import CANDLE_COLUMNS, check_symbol, check_timeframe, utc_index
from training.data.store import CandleStore
from training.errors import BadMarketData

TIME_COLUMNS = ("open_time", "timestamp", "time", "date", "datetime")


MAX_CSV_BYTES = 2 << 30
"""Ten years of 1m candles is well under 1 GiB; anything larger is not a candle file."""


def _check_regular_file(path: Path) -> None:
    """Refuse devices, FIFOs and huge files before reading (``/dev/zero`` would never end)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise BadMarketData(f"no such file: {path}") from None
    except OSError as exc:
        raise BadMarketData(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadMarketData(f"{path} is not a regular file (a directory, device or FIFO)")
    if info.st_size > MAX_CSV_BYTES:
        raise BadMarketData(f"{path} is {info.st_size} bytes, over the {MAX_CSV_BYTES} byte limit for a candle CSV")


def read_candle_csv(path: Path | str, timeframe: str) -> pd.DataFrame:
    """A validated candle frame (the store's layout) from a CSV file."""
    step = check_timeframe(timeframe)
    path = Path(path)
    _check_regular_file(path)
    try:
        raw = pd.read_csv(path)
    except FileNotFoundError:
        raise BadMarketData(f"no such file: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BadMarketData(f"{path} is not a readable CSV file ({type(exc).__name__})") from None
    columns = {str(c).strip().lower(): c for c in raw.columns}
    time_col = next((columns[c] for c in TIME_COLUMNS if c in columns), None)
    if time_col is None:
        raise BadMarketData(f"{path} has no time column (expected one of {', '.join(TIME_COLUMNS)})")
    missing = [c for c in CANDLE_COLUMNS[1:] if c not in columns]
    if missing:
        raise BadMarketData(f"{path} lacks the column(s) {', '.join(missing)}")
    if raw.empty:
        raise BadMarketData(f"{path} holds no rows")
    seconds = _parse_times(raw[time_col], path)
    values = {}
    for c in CANDLE_COLUMNS[1:]:
        col = pd.to_numeric(raw[columns[c]], errors="coerce")
        bad = np.flatnonzero(col.isna().to_numpy())
        if len(bad):
            raise BadMarketData(f"{path} row {bad[0] + 2}: {c} is not a number ({raw[columns[c]].iloc[bad[0]]!r})")
        values[c] = col.to_numpy(dtype=np.float64)
    _validate(path, seconds, values, step)
    frame = pd.DataFrame(values)
    frame.insert(0, "timestamp", utc_index(seconds))
    return frame


def import_candle_csv(store: CandleStore, symbol: str, timeframe: str, path: Path | str) -> int:
    """Validate ``path`` and merge it into the store; returns the rows imported."""
    check_symbol(symbol)
    frame = read_candle_csv(path, timeframe)
    step = check_timeframe(timeframe)
    first = int(frame["timestamp"].iloc[0].timestamp())
    last = int(frame["timestamp"].iloc[-1].timestamp())
    store.merge_candles(symbol, timeframe, frame, covered=[(first, last + step)])
    return len(frame)


def _parse_times(col: pd.Series, path: Path) -> np.ndarray:
    numeric = pd.to_numeric(col, errors="coerce")
    if numeric.notna().all():
        v = numeric.to_numpy(dtype=np.float64)
        # Unix milliseconds are past 1e11 (year 5138 in seconds); seconds are below.
        scale = 1000.0 if np.nanmedian(v) > 1e11 else 1.0
        return np.round(v / scale).astype(np.int64)
    parsed = pd.to_datetime(col, utc=True, errors="coerce", format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise BadMarketData(f"{path} row {bad[0] + 2}: unparseable time {col.iloc[bad[0]]!r}")
    return parsed.astype("datetime64[ns, UTC]").to_numpy(dtype="datetime64[ns]").astype(np.int64) // 1_000_000_000


def _validate(path: Path, t: np.ndarray, v: dict[str, np.ndarray], step: int) -> None:
    d = np.diff(t)
    for i in np.flatnonzero(d <= 0)[:1]:
        what = "duplicate" if d[i] == 0 else "out-of-order"
        raise BadMarketData(f"{path} row {i + 3}: {what} timestamp (times must be strictly increasing)")
    if len(d) and int(np.median(d)) != step:
        raise BadMarketData(
            f"{path}: candles are {int(np.median(d))}s apart but the timeframe is {step}s (wrong timeframe?)"
        )
    off = np.flatnonzero(t % step)
    if len(off):
        raise BadMarketData(f"{path} row {off[0] + 2}: time is not on the {step}s candle grid (wrong timeframe?)")
    prices = np.stack([v["open"], v["high"], v["low"], v["close"]])
    bad = np.flatnonzero((prices <= 0).any(axis=0) | ~np.isfinite(prices).all(axis=0))
    if len(bad):
        raise BadMarketData(f"{path} row {bad[0] + 2}: prices must be positive")
    neg = np.flatnonzero(v["volume"] < 0)
    if len(neg):
        raise BadMarketData(f"{path} row {neg[0] + 2}: volume is negative")
    wrong = np.flatnonzero(
        (v["low"] > np.minimum(v["open"], v["close"])) | (v["high"] < np.maximum(v["open"], v["close"]))
    )
    if len(wrong):
        raise BadMarketData(f"{path} row {wrong[0] + 2}: low/high do not bracket open and close")
