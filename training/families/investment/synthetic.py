"""A made-up daily market with something to learn, or nothing: for tests and benchmarks.

``structured=True``: a hidden regime follows a Markov chain (it stays put with
probability `STAY` a day, about a month and a half on average) over the five
`training.families.investment.REGIMES`; each sets SPY's daily drift and volatility
(`REGIME_MOVES`), the credit and bond legs, the yield curve, and the news tone, which
turns `TONE_LEAD_DAYS` days *before* the market does (the news runs ahead of prices).
Each asset has a slowly drifting hidden quality ``q`` (AR(1), persistence `QUALITY_PERSISTENCE`):
a better asset drifts up and swings less, so its next month's risk-adjusted return is
higher, which its volatility and relative strength both reveal in part.

``structured=False``: a random walk. Every series moves by independent draws with one
constant volatility and no drift that depends on anything; the tone and yields are noise.
There is nothing to learn, and no model may pass its gate on it.

The tables come out of `training.families.investment.build`, like the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.families.investment import REGIMES
from training.families.investment.build import asset_table, context_table
from training.families.investment.data import write_table

STAY = 0.95
TONE_LEAD_DAYS = 6
QUALITY_PERSISTENCE = 0.996
REGIME_MOVES = {
    # regime: (SPY daily drift, SPY daily volatility, news tone level, yield-curve slope level)
    "calm_uptrend": (0.0040, 0.003, 1.5, 1.6),
    "risk_on_trend": (0.0060, 0.009, 0.7, 1.0),
    "risk_off_trend": (-0.0060, 0.009, -0.7, -0.2),
    "choppy": (0.0, 0.004, 0.0, 0.4),
    "high_vol_panic": (-0.0100, 0.040, -1.8, -0.8),
}


@dataclass(frozen=True)
class DailyMarket:
    """Closes (date index: the context symbols and the assets), yields, tone, hidden regimes."""

    closes: pd.DataFrame
    yields: pd.DataFrame
    tone: pd.Series
    regimes: np.ndarray
    assets: tuple[str, ...]

    def context(self) -> pd.DataFrame:
        return context_table(self.closes, self.yields, self.tone)

    def features(self) -> pd.DataFrame:
        return asset_table(self.closes, self.assets)


def daily_market(days: int, assets: int = 12, *, seed: int = 0, structured: bool = True) -> DailyMarket:
    """``days`` business days of the made-up market (reproducible from ``seed``)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2019-01-02", periods=days)
    names = tuple(f"A{i:02d}" for i in range(assets))
    if structured:
        regimes = _chain(days + TONE_LEAD_DAYS, rng)
        moves = np.array([REGIME_MOVES[REGIMES[r]] for r in regimes])
        now, ahead = moves[:days], moves[TONE_LEAD_DAYS:]
        drift, vol = now[:, 0], now[:, 1]
        spy = drift + vol * rng.standard_normal(days)
        stress = (vol - 0.006) / 0.022  # 0 calm .. 1 panic
        hyg = 0.5 * spy - 0.0008 * stress + 0.002 * rng.standard_normal(days)
        ief = 0.0004 * stress + 0.003 * rng.standard_normal(days)
        tlt = 2.0 * ief + 0.002 * rng.standard_normal(days)
        vixy = -3.0 * spy - 0.002 + 0.01 * stress + 0.02 * rng.standard_normal(days)
        tone = ahead[:, 2] + 0.25 * rng.standard_normal(days)
        slope = now[:, 3] + 0.1 * rng.standard_normal(days)
        quality = _quality(days, assets, rng)
        beta = rng.uniform(0.9, 1.1, assets)
        asset_moves = (
            spy[:, None] * beta[None, :]
            + 0.0008 * quality
            + 0.014 * np.exp(-0.6 * quality) * rng.standard_normal((days, assets))
        )
        hidden = regimes[:days]
    else:
        spy, hyg, ief, tlt = (0.0002 + 0.011 * rng.standard_normal(days) for _ in range(4))
        vixy = 0.03 * rng.standard_normal(days)
        tone = rng.standard_normal(days)
        slope = 0.6 + 0.15 * rng.standard_normal(days)
        asset_moves = 0.0002 + 0.015 * rng.standard_normal((days, assets))
        hidden = np.full(days, -1)
    ten = 4.0 + np.cumsum(0.03 * rng.standard_normal(days))
    legs = {"SPY": spy, "HYG": hyg, "IEF": ief, "TLT": tlt, "VIXY": vixy}
    closes = pd.DataFrame({k: 100.0 * np.exp(np.cumsum(v)) for k, v in legs.items()}, index=dates)
    for i, name in enumerate(names):
        closes[name] = 50.0 * np.exp(np.cumsum(asset_moves[:, i]))
    yields = pd.DataFrame({"DGS10": ten, "DGS2": ten - slope}, index=dates)
    return DailyMarket(closes, yields, pd.Series(tone, index=dates), hidden, names)


def _chain(days: int, rng: np.random.Generator) -> np.ndarray:
    states = np.empty(days, dtype=np.int64)
    states[0] = rng.integers(len(REGIMES))
    for t in range(1, days):
        if rng.random() < STAY:
            states[t] = states[t - 1]
        else:
            states[t] = (states[t - 1] + rng.integers(1, len(REGIMES))) % len(REGIMES)
    return states


def _quality(days: int, assets: int, rng: np.random.Generator) -> np.ndarray:
    q = np.empty((days, assets))
    q[0] = rng.standard_normal(assets)
    shock = np.sqrt(1.0 - QUALITY_PERSISTENCE**2)
    for t in range(1, days):
        q[t] = QUALITY_PERSISTENCE * q[t - 1] + shock * rng.standard_normal(assets)
    return q


def write_synthetic_tables(
    folder: Path, days: int, assets: int = 12, *, seed: int = 0, structured: bool = True
) -> tuple[Path, Path]:
    """``<folder>/context.parquet`` and ``<folder>/features.parquet`` of a made-up market."""
    market = daily_market(days, assets, seed=seed, structured=structured)
    folder = Path(folder)
    return (
        write_table(market.context(), folder / "context.parquet"),
        write_table(market.features(), folder / "features.parquet"),
    )
