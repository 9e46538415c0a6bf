"""The investment system's data contract (seed runbook 001), shared by ``regime`` and ``health``.

Two daily tables feed the two models:

- **context**, one row per trading day, for the regime model: `CONTEXT_COLUMNS`;
- **asset features**, one row per day and symbol, for the health model: `FEATURE_COLUMNS`.

In the data bucket a daily pipeline writes one partition per day
(`training.families.investment.data.partition_key`)::

    context/date=YYYY-MM-DD/context.parquet
    features/date=YYYY-MM-DD/features.parquet

and training reads the newest ``max_days`` partitions of each into one file per table
(`data.read_partitions`). Every reader checks the columns (naming the missing ones), the
number of days, NaN days and calendar gaps, and refuses rather than filling across them.

Modules: `data` (layout, reading, validation), `build` (the two tables from daily bars,
yields and tone: what the daily pipeline runs), `synthetic` (a regime-switching daily
market for tests and benches), `epochs` (the shared resumable torch epoch loop).
"""

from __future__ import annotations

REGIMES: tuple[str, ...] = ("calm_uptrend", "risk_on_trend", "risk_off_trend", "choppy", "high_vol_panic")
"""The five regimes, in the order of the regime model's outputs."""

CONTEXT_FEATURES: tuple[str, ...] = (
    "spy_return_1d",
    "spy_return_21d",
    "spy_vol_21d",
    "yield_slope",
    "credit_spread_proxy",
    "vixy_return_21d",
    "risk_off_proxy",
    "gdelt_avg_tone",
)
CONTEXT_COLUMNS: tuple[str, ...] = ("date", *CONTEXT_FEATURES)

ASSET_FEATURES: tuple[str, ...] = (
    "return_1d",
    "return_5d",
    "return_21d",
    "return_63d",
    "vol_21d",
    "vol_63d",
    "drawdown_21d",
    "drawdown_63d",
    "rel_strength_21d",
    "rel_strength_63d",
)
FEATURE_COLUMNS: tuple[str, ...] = ("date", "symbol", *ASSET_FEATURES)

CONTEXT_SYMBOLS: tuple[str, ...] = ("SPY", "HYG", "IEF", "TLT", "VIXY")
"""Daily bars the context table is built from (with FRED's DGS10/DGS2 and GDELT's tone)."""
