"""The two daily tables built from daily closes, Treasury yields and news tone.

What the daily pipeline (`console data daily|backfill`) runs, and what the synthetic
market goes through, so training, tests and the runtime see one definition. Every
figure of a day uses only values known at that day's close: returns and volatilities
over windows that end on the day, drawdowns from the highest close of windows that end
on the day, yields and tone of the day (carried forward at most `CARRY_DAYS` days when a
source skips a holiday, never backwards).

Context (one row per day; 252 trading days a year)::

    spy_return_1d        SPY close / previous close - 1
    spy_return_21d       SPY close / close 21 days before - 1
    spy_vol_21d          stdev of the last 21 daily SPY returns * sqrt(252)
    yield_slope          10-year minus 2-year Treasury yield (FRED DGS10 - DGS2), percent
    credit_spread_proxy  21-day change of HYG/IEF (a falling ratio: credit spreads widening)
    vixy_return_21d      VIXY close / close 21 days before - 1
    risk_off_proxy       21-day change of TLT/SPY (a rising ratio: money leaving stocks)
    gdelt_avg_tone       GDELT's average tone of the day's news

Asset features (one row per day and symbol)::

    return_{1,5,21,63}d      close / close k days before - 1
    vol_{21,63}d             stdev of the last k daily returns * sqrt(252)
    drawdown_{21,63}d        close / highest close of the last k days - 1 (<= 0)
    rel_strength_{21,63}d    return_kd minus SPY's return_kd
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from training.errors import BadMarketData
from training.families.investment import CONTEXT_COLUMNS, CONTEXT_SYMBOLS, FEATURE_COLUMNS

WARMUP_DAYS = 63
"""Closes a day needs behind it before its asset features exist (the longest window)."""
CONTEXT_WARMUP_DAYS = 21
CARRY_DAYS = 3
"""Days a yield or tone value may be carried forward over a source's holiday."""
_ANNUAL = math.sqrt(252.0)


def _closes(closes: pd.DataFrame, names: tuple[str, ...] | list[str]) -> pd.DataFrame:
    missing = [n for n in names if n not in closes.columns]
    if missing:
        raise BadMarketData(f"daily closes lack {', '.join(missing)}; fetch their bars first")
    frame = closes.loc[:, list(names)].astype(np.float64).sort_index()
    if (frame <= 0).to_numpy().any():
        raise BadMarketData("daily closes must be positive")
    return frame


def context_table(closes: pd.DataFrame, yields: pd.DataFrame, tone: pd.Series) -> pd.DataFrame:
    """The context table from ``closes`` (date index; SPY, HYG, IEF, TLT, VIXY), ``yields``
    (date index; DGS10, DGS2) and ``tone`` (date index). Warm-up days are left out."""
    px = _closes(closes, CONTEXT_SYMBOLS)
    spy = px["SPY"]
    r1 = spy.pct_change()
    aligned_yields = yields.reindex(px.index).ffill(limit=CARRY_DAYS)
    frame = pd.DataFrame(
        {
            "date": px.index,
            "spy_return_1d": r1,
            "spy_return_21d": spy.pct_change(21),
            "spy_vol_21d": r1.rolling(21).std() * _ANNUAL,
            "yield_slope": aligned_yields["DGS10"] - aligned_yields["DGS2"],
            "credit_spread_proxy": (px["HYG"] / px["IEF"]).pct_change(21),
            "vixy_return_21d": px["VIXY"].pct_change(21),
            "risk_off_proxy": (px["TLT"] / spy).pct_change(21),
            "gdelt_avg_tone": tone.reindex(px.index).ffill(limit=CARRY_DAYS),
        }
    )
    return frame.iloc[CONTEXT_WARMUP_DAYS:].reset_index(drop=True).loc[:, list(CONTEXT_COLUMNS)]


def asset_table(closes: pd.DataFrame, symbols: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """The asset features of ``symbols`` from ``closes`` (date index, with SPY); warm-up left out."""
    px = _closes(closes, ["SPY", *[s for s in symbols if s != "SPY"]])
    spy = px["SPY"]
    frames = []
    for symbol in symbols:
        close = px[symbol]
        r1 = close.pct_change()
        part = pd.DataFrame({"date": px.index, "symbol": symbol})
        for k in (1, 5, 21, 63):
            part[f"return_{k}d"] = close.pct_change(k).to_numpy()
        for k in (21, 63):
            part[f"vol_{k}d"] = (r1.rolling(k).std() * _ANNUAL).to_numpy()
            part[f"drawdown_{k}d"] = (close / close.rolling(k).max() - 1.0).to_numpy()
            part[f"rel_strength_{k}d"] = (close.pct_change(k) - spy.pct_change(k)).to_numpy()
        frames.append(part.iloc[WARMUP_DAYS:])
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["date", "symbol"], kind="mergesort").reset_index(drop=True).loc[:, list(FEATURE_COLUMNS)]
