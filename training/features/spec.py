"""The declarative feature spec: every feature's name, family, kind, parameters and
meaning, in order. The builder (`training.features.build`) computes exactly these.

A feature is a `FeatureDef`; its ``kind`` names a computation in the builder and its
``params`` configure it, so an RSI period or a window lives here, not in code. The
spec's hash (``FeatureSpec.hash``) covers the version and every name, family, kind and
parameter in order: change any of them and files built from the old spec no longer match.

Families (the master workflow's): session, spread, volume, moving_average, returns, rsi,
macd, bollinger, volatility, fundamentals (54 features), and multi_timeframe (19 more,
for the symbols `FeatureConfig.multi_timeframe_symbols` names: BTC-USD and SOL-USD by
default, so BTC-USD 73, ETH-USD 54, SOL-USD 73).

Not features (and not counted, as in the runbook): timestamp, open, high, low, close,
volume and the categorical columns session and volatility_regime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

from training.data.market import check_symbol
from training.features.io import feature_hash

SPEC_VERSION = "1"

Params = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class FeatureDef:
    """One feature: what it is called, which family it belongs to, how it is computed."""

    name: str
    family: str
    kind: str
    """The builder's computation for it (``sma``, ``rsi``, ``mtf_rsi`` ...)."""
    params: Params = ()
    description: str = ""

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    def definition(self) -> dict[str, Any]:
        """What the hash covers (the description is prose and does not count)."""
        return {"name": self.name, "family": self.family, "kind": self.kind, "params": dict(self.params)}


def _f(name: str, family: str, kind: str, description: str, **params: Any) -> FeatureDef:
    return FeatureDef(name, family, kind, tuple(sorted(params.items())), description)


SESSIONS: dict[str, tuple[int, int]] = {"tokyo": (0, 9), "london": (7, 16), "new_york": (13, 22)}
"""Trading sessions as [start, end) UTC hours of the candle's open time."""

BASE_FEATURES: tuple[FeatureDef, ...] = (
    # session (7)
    _f("session_tokyo", "session", "session_flag", "1 while the Tokyo session (00-09 UTC) is open", session="tokyo"),
    _f("session_london", "session", "session_flag", "1 while the London session (07-16 UTC) is open", session="london"),
    _f(
        "session_new_york",
        "session",
        "session_flag",
        "1 while the New York session (13-22 UTC) is open",
        session="new_york",
    ),
    _f("hour_sin", "session", "day_cycle", "sine of the UTC time of day", fn="sin"),
    _f("hour_cos", "session", "day_cycle", "cosine of the UTC time of day", fn="cos"),
    _f("dow_sin", "session", "week_cycle", "sine of the day of the week", fn="sin"),
    _f("dow_cos", "session", "week_cycle", "cosine of the day of the week", fn="cos"),
    # spread normalised by ATR (4)
    _f("atr_14", "spread", "atr", "average true range, 14 candles (TA-Lib ATR)", period=14),
    _f("spread_pct", "spread", "range_pct", "(high - low) / close"),
    _f("spread_atr", "spread", "range_atr", "(high - low) / ATR 14", period=14),
    _f("body_atr", "spread", "body_atr", "|close - open| / ATR 14", period=14),
    # volume (5)
    _f("volume_sma_20", "volume", "volume_sma", "moving average of volume, 20 candles", period=20),
    _f("volume_ratio_20", "volume", "volume_ratio", "volume / its 20-candle average", period=20),
    _f("volume_trend_5_20", "volume", "volume_trend", "5-candle / 20-candle average volume - 1", fast=5, slow=20),
    _f("log_volume", "volume", "log_volume", "log(1 + volume)"),
    _f("volume_zscore_50", "volume", "volume_zscore", "(volume - mean) / std over 50 candles (0 when flat)", period=50),
    # moving averages (11)
    _f("sma_7", "moving_average", "sma", "simple moving average of close, 7 candles", period=7),
    _f("sma_14", "moving_average", "sma", "simple moving average of close, 14 candles", period=14),
    _f("sma_21", "moving_average", "sma", "simple moving average of close, 21 candles", period=21),
    _f("sma_50", "moving_average", "sma", "simple moving average of close, 50 candles", period=50),
    _f("close_to_sma_7", "moving_average", "close_to_sma", "close / SMA 7 - 1", period=7),
    _f("close_to_sma_14", "moving_average", "close_to_sma", "close / SMA 14 - 1", period=14),
    _f("close_to_sma_21", "moving_average", "close_to_sma", "close / SMA 21 - 1", period=21),
    _f("close_to_sma_50", "moving_average", "close_to_sma", "close / SMA 50 - 1", period=50),
    _f("sma_7_21_spread", "moving_average", "sma_spread", "SMA 7 / SMA 21 - 1", fast=7, slow=21),
    _f("ema_12", "moving_average", "ema", "exponential moving average of close, 12 candles", period=12),
    _f("ema_26", "moving_average", "ema", "exponential moving average of close, 26 candles", period=26),
    # returns (4)
    _f("return_1", "returns", "return", "close / close 1 candle earlier - 1", lag=1),
    _f("return_5", "returns", "return", "close / close 5 candles earlier - 1", lag=5),
    _f("return_15", "returns", "return", "close / close 15 candles earlier - 1", lag=15),
    _f("return_60", "returns", "return", "close / close 60 candles earlier - 1", lag=60),
    # RSI (3)
    _f("rsi_14", "rsi", "rsi", "relative strength index, 14 candles (TA-Lib RSI)", period=14),
    _f("rsi_7", "rsi", "rsi", "relative strength index, 7 candles", period=7),
    _f("rsi_14_change_5", "rsi", "rsi_change", "RSI 14 minus RSI 14 five candles earlier", period=14, lag=5),
    # MACD (4)
    _f("macd", "macd", "macd", "MACD line, EMA 12 - EMA 26 (TA-Lib MACD)", fast=12, slow=26, signal=9, output="macd"),
    _f("macd_signal", "macd", "macd", "MACD signal line, EMA 9 of MACD", fast=12, slow=26, signal=9, output="signal"),
    _f("macd_hist", "macd", "macd", "MACD histogram, MACD - signal", fast=12, slow=26, signal=9, output="hist"),
    _f("macd_hist_pct", "macd", "macd_hist_pct", "MACD histogram / close", fast=12, slow=26, signal=9),
    # Bollinger Bands (5)
    _f(
        "bb_upper_20",
        "bollinger",
        "bbands",
        "upper Bollinger Band, 20 candles, 2 std (TA-Lib BBANDS)",
        period=20,
        nbdev=2.0,
        output="upper",
    ),
    _f("bb_middle_20", "bollinger", "bbands", "middle Bollinger Band (SMA 20)", period=20, nbdev=2.0, output="middle"),
    _f(
        "bb_lower_20",
        "bollinger",
        "bbands",
        "lower Bollinger Band, 20 candles, 2 std",
        period=20,
        nbdev=2.0,
        output="lower",
    ),
    _f("bb_width_20", "bollinger", "bb_width", "(upper - lower) / middle", period=20, nbdev=2.0),
    _f("bb_position_20", "bollinger", "bb_position", "(close - lower) / (upper - lower)", period=20, nbdev=2.0),
    # volatility regime (4)
    _f("volatility_20", "volatility", "volatility", "std of 1-candle returns over 20 candles", period=20),
    _f("volatility_60", "volatility", "volatility", "std of 1-candle returns over 60 candles", period=60),
    _f("volatility_ratio_20_60", "volatility", "volatility_ratio", "volatility 20 / volatility 60", fast=20, slow=60),
    _f("atr_pct_14", "volatility", "atr_pct", "ATR 14 / close", period=14),
    # CoinGecko fundamentals (7), daily, known from each point's timestamp
    _f(
        "market_cap_trend_7d",
        "fundamentals",
        "fund_change",
        "market cap / market cap 7 days earlier - 1",
        column="market_cap",
        days=7,
    ),
    _f(
        "market_cap_trend_30d",
        "fundamentals",
        "fund_change",
        "market cap / market cap 30 days earlier - 1",
        column="market_cap",
        days=30,
    ),
    _f(
        "volume_change_7d",
        "fundamentals",
        "fund_volume_change",
        "7-day mean 24h volume / the 7 days before - 1",
        days=7,
    ),
    _f("distance_from_ath", "fundamentals", "fund_ath_distance", "close / all-time high known at the time - 1"),
    _f(
        "market_cap_change_1d",
        "fundamentals",
        "fund_change",
        "market cap / market cap 1 day earlier - 1",
        column="market_cap",
        days=1,
    ),
    _f("price_change_trend_7d", "fundamentals", "fund_price_trend", "mean daily price change over 7 days", days=7),
    _f("price_change_trend_30d", "fundamentals", "fund_price_trend", "mean daily price change over 30 days", days=30),
)

MTF_TIMEFRAMES = ("5m", "15m", "1h")


def _mtf_features() -> tuple[FeatureDef, ...]:
    out: list[FeatureDef] = []
    for tf in ("5m", "15m"):
        out += [
            _f(
                f"mtf_{tf}_return_1",
                "multi_timeframe",
                "mtf_return",
                f"last closed {tf} candle's return",
                timeframe=tf,
                lag=1,
            ),
            _f(
                f"mtf_{tf}_close_to_sma_20",
                "multi_timeframe",
                "mtf_close_to_sma",
                f"{tf} close / {tf} SMA 20 - 1",
                timeframe=tf,
                period=20,
            ),
            _f(
                f"mtf_{tf}_rsi_14",
                "multi_timeframe",
                "mtf_rsi",
                f"RSI 14 on closed {tf} candles",
                timeframe=tf,
                period=14,
            ),
        ]
    tf = "1h"
    out += [
        _f("mtf_1h_return_1", "multi_timeframe", "mtf_return", "last closed 1h candle's return", timeframe=tf, lag=1),
        _f(
            "mtf_1h_close_to_sma_20",
            "multi_timeframe",
            "mtf_close_to_sma",
            "1h close / 1h SMA 20 - 1",
            timeframe=tf,
            period=20,
        ),
        _f("mtf_1h_rsi_14", "multi_timeframe", "mtf_rsi", "RSI 14 on closed 1h candles", timeframe=tf, period=14),
        _f(
            "mtf_1h_macd",
            "multi_timeframe",
            "mtf_macd",
            "MACD 12/26/9 on closed 1h candles",
            timeframe=tf,
            fast=12,
            slow=26,
            signal=9,
            output="macd",
        ),
        _f(
            "mtf_1h_macd_signal",
            "multi_timeframe",
            "mtf_macd",
            "MACD signal on closed 1h candles",
            timeframe=tf,
            fast=12,
            slow=26,
            signal=9,
            output="signal",
        ),
        _f(
            "mtf_1h_macd_hist",
            "multi_timeframe",
            "mtf_macd",
            "MACD histogram on closed 1h candles",
            timeframe=tf,
            fast=12,
            slow=26,
            signal=9,
            output="hist",
        ),
        _f("mtf_1h_atr_pct_14", "multi_timeframe", "mtf_atr_pct", "1h ATR 14 / 1h close", timeframe=tf, period=14),
        _f(
            "mtf_1h_volume_ratio_20",
            "multi_timeframe",
            "mtf_volume_ratio",
            "1h volume / its 20-candle average",
            timeframe=tf,
            period=20,
        ),
        _f(
            "mtf_1h_bb_position_20",
            "multi_timeframe",
            "mtf_bb_position",
            "position of the 1h close in its Bollinger Bands",
            timeframe=tf,
            period=20,
            nbdev=2.0,
        ),
        _f(
            "mtf_alignment_1m_5m",
            "multi_timeframe",
            "mtf_alignment",
            "trend sign 1m x trend sign 5m (+1 agree, -1 disagree)",
            a="1m",
            b="5m",
        ),
        _f(
            "mtf_alignment_5m_15m",
            "multi_timeframe",
            "mtf_alignment",
            "trend sign 5m x trend sign 15m",
            a="5m",
            b="15m",
        ),
        _f(
            "mtf_alignment_15m_1h",
            "multi_timeframe",
            "mtf_alignment",
            "trend sign 15m x trend sign 1h",
            a="15m",
            b="1h",
        ),
        _f(
            "mtf_alignment_score",
            "multi_timeframe",
            "mtf_alignment_score",
            "mean trend sign over 1m, 5m, 15m and 1h",
            timeframes="1m,5m,15m,1h",
        ),
    ]
    return tuple(out)


MTF_FEATURES: tuple[FeatureDef, ...] = _mtf_features()


@dataclass(frozen=True)
class FeatureConfig:
    """Which symbols take the multi-timeframe features, and the counts to verify."""

    multi_timeframe_symbols: frozenset[str] = frozenset({"BTC-USD", "SOL-USD"})
    symbols: tuple[str, ...] = ("BTC-USD", "ETH-USD", "SOL-USD")
    """The symbols the checklist builds and verifies by default."""
    counts: Mapping[str, int] = field(default_factory=lambda: {"BTC-USD": 73, "ETH-USD": 54, "SOL-USD": 73})
    """The feature counts the runbook expects; `console features verify` checks files against them."""
    timeframe: str = "1m"
    """The candles each row is (`FeatureSpec.base`): 1m, or 5m/15m/1h to train on longer candles."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "FeatureConfig":
        """From a config section: ``{"multi_timeframe_symbols": [...], "symbols": [...], "timeframe": "1h"}``."""
        from training.data.market import TIMEFRAMES

        data = dict(data or {})
        mtf = data.pop("multi_timeframe_symbols", None)
        symbols = data.pop("symbols", None)
        counts = data.pop("counts", None)
        timeframe = data.pop("timeframe", None)
        if data:
            raise ValueError(f"unknown feature setting(s): {', '.join(sorted(data))}")
        if timeframe is not None and timeframe not in TIMEFRAMES:
            raise ValueError(f"unknown timeframe {timeframe!r} (use one of {', '.join(TIMEFRAMES)})")
        base = cls()
        return cls(
            frozenset(check_symbol(s) for s in mtf) if mtf is not None else base.multi_timeframe_symbols,
            tuple(check_symbol(s) for s in symbols) if symbols is not None else base.symbols,
            {check_symbol(k): int(v) for k, v in counts.items()} if counts is not None else base.counts,
            str(timeframe) if timeframe is not None else base.timeframe,
        )


@dataclass(frozen=True)
class FeatureSpec:
    """The ordered features for one symbol."""

    symbol: str
    features: tuple[FeatureDef, ...]
    version: str = SPEC_VERSION
    timeframes: tuple[str, ...] = field(default=("1m",))
    """Candle timeframes the builder needs (the base, plus 5m/15m/1h with multi-timeframe features)."""
    base: str = "1m"
    """The candles each row is: 1m by default; 1h (or 5m, 15m) trains on longer candles, and
    the hash covers it, so a file built on one timeframe never passes for another."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def count(self) -> int:
        return len(self.features)

    @cached_property
    def hash(self) -> str:
        return feature_hash(self.version, [f.definition() for f in self.features], self.base)

    @property
    def uses_multi_timeframe(self) -> bool:
        return any(f.family == "multi_timeframe" for f in self.features)

    @cached_property
    def lookback_minutes(self) -> int:
        """The longest look-back of any candle feature, in minutes, from the definitions:
        candles each computation reads (a MACD: slow + signal; RSI's change: period + lag;
        the volatility regime: 60) times the candle length. Daily fundamentals (up to 30
        days of daily points) are not counted here: `daily_lookback_days` gives theirs."""
        features = (f for f in self.features if f.family != "fundamentals")
        return max((feature_lookback_minutes(f, self.base) for f in features), default=0)

    @property
    def lookback_rows(self) -> int:
        """`lookback_minutes` in rows of the base timeframe (rounded up)."""
        from training.data.market import TIMEFRAMES

        minutes = TIMEFRAMES[self.base] // 60
        return -(-self.lookback_minutes // minutes)

    @property
    def daily_lookback_days(self) -> int:
        """The longest look-back of the daily fundamentals features, in days (0 without them)."""
        days = [2 * int(f.param("days") or 0) if f.kind == "fund_volume_change" else int(f.param("days") or 0)
                for f in self.features if f.family == "fundamentals"]  # fmt: skip
        return max(days, default=0)


def feature_lookback_minutes(f: FeatureDef, base: str = "1m") -> int:
    """Minutes of candles before (and including) a row that feature ``f`` reads, on rows of
    ``base`` candles."""
    from training.data.market import TIMEFRAMES

    minutes = TIMEFRAMES.get(str(f.param("timeframe") or base), 60) // 60
    candles = max(
        int(f.param("slow") or 0) + int(f.param("signal") or 0),
        int(f.param("period") or 0) + int(f.param("lag") or 0),
        int(f.param("lag") or 0) + 1,
        60 if f.kind in ("volatility_ratio",) else 0,
        1,
    )
    # Higher-timeframe candles are used once closed: one more candle of delay at most.
    higher = str(f.param("timeframe") or base) != base
    return (candles + (1 if higher and minutes > 1 else 0)) * minutes


def spec_for(symbol: str, config: FeatureConfig | None = None) -> FeatureSpec:
    """The feature spec for ``symbol`` under ``config`` (the default config if None).

    On one-minute rows (the default) the multi-timeframe symbols add the 19 features of
    5m/15m/1h candles. On a longer base (``config.timeframe``, e.g. 1h) every symbol takes
    the 54 base features computed on those candles: the multi-timeframe family votes with
    the 1m trend and reads candles no longer than the base, so it has no meaning there."""
    config = config or FeatureConfig()
    check_symbol(symbol)
    base = config.timeframe
    if base != "1m":
        return FeatureSpec(symbol, BASE_FEATURES, timeframes=(base,), base=base)
    if symbol in config.multi_timeframe_symbols:
        return FeatureSpec(symbol, BASE_FEATURES + MTF_FEATURES, timeframes=("1m", *MTF_TIMEFRAMES))
    return FeatureSpec(symbol, BASE_FEATURES)


def expected_counts(config: FeatureConfig | None = None, symbols: tuple[str, ...] | None = None) -> dict[str, int]:
    """Feature count each symbol must have: the configured count (BTC-USD 73, ETH-USD 54,
    SOL-USD 73), or for a symbol the config does not list, its spec's count. The configured
    counts are the runbook's one-minute ones: on a longer base each symbol's spec count holds."""
    config = config or FeatureConfig()
    counts = config.counts if config.timeframe == "1m" else {}
    return {s: int(counts.get(s, spec_for(s, config).count)) for s in (symbols or config.symbols)}
