"""Names shared by the market-data modules: symbols, timeframes and UTC times.

Symbols and timeframes are validated here, before they reach a URL or a file path.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd

from training.errors import BadMarketData

TIMEFRAMES: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
"""Timeframe name -> candle length in seconds (Coinbase granularities)."""

CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
FUNDAMENTAL_COLUMNS = ("timestamp", "price", "market_cap", "total_volume", "ath", "ath_time")

_SYMBOL = re.compile(r"^[A-Z0-9]{2,10}-[A-Z]{3,5}$")


def check_symbol(symbol: str) -> str:
    """The symbol (BTC-USD) if it is a plain trading pair, else `BadMarketData`."""
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise BadMarketData(f"{symbol!r} is not a symbol like BTC-USD (BASE-QUOTE, capital letters and digits)")
    return symbol


def check_timeframe(timeframe: str) -> int:
    """Seconds per candle for a known timeframe name, else `BadMarketData`."""
    try:
        return TIMEFRAMES[timeframe]
    except (KeyError, TypeError):
        raise BadMarketData(f"unknown timeframe {timeframe!r} (use one of {', '.join(TIMEFRAMES)})") from None


def to_unix(value: int | float | str | date | datetime | pd.Timestamp) -> int:
    """Unix seconds for a time given as seconds, ISO text, a date or a datetime (naive = UTC)."""
    try:
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, float):
            return int(value)
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise BadMarketData(f"{value!r} is not a date or time (use YYYY-MM-DD or ISO 8601)") from None
    if stamp is pd.NaT:
        raise BadMarketData(f"{value!r} is not a date or time")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.timestamp())


def check_range(start: int, end: int) -> None:
    """Refuse an empty or reversed range."""
    if end <= start:
        raise BadMarketData(f"end ({iso(end)}) is not after start ({iso(start)}): give an end later than the start")


def iso(ts: int) -> str:
    """Unix seconds as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_index(seconds: np.ndarray) -> pd.Series:
    """Unix seconds as a datetime64[ns, UTC] series (the store's timestamp column)."""
    return pd.Series(pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s", utc=True)).astype(
        "datetime64[ns, UTC]"
    )


def unix_seconds(timestamps: pd.Series | pd.Index) -> np.ndarray:
    """A datetime column (UTC, or naive taken as UTC) as int64 unix seconds."""
    idx = pd.DatetimeIndex(timestamps)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    return np.asarray(idx.as_unit("s").asi8, dtype=np.int64)
