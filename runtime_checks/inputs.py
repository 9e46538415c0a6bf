"""What the runtime checks read from outside: fresh candles and the runtime feature builder.

Both are small protocols so the checks run the real code above them with any source:
`CoinbaseCandles` pages the Coinbase Exchange API (the real one, or the sandbox market
simulator), and `SpecFeatureBuilder` is the one builder `training.features` uses for
training, so training and runtime features can never drift. Tests plug in their own
implementations of the same protocols.

`fresh_candles` refuses candles that cannot stand for "now": the newest one too old, or a
stretch without candles longer than allowed. Shorter holes (a minute without trades has
no candle) are filled with the previous close and zero volume, as a runtime would.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from runtime_checks.errors import CandleGap, CheckInputError, RuntimeCheckError, StaleCandles
from training.features.gaps import FILL_TOLERANCE_BARS, fill_small_holes

CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class FeatureSpecInfo:
    """The runtime builder's feature contract for one symbol."""

    names: tuple[str, ...]
    hash: str
    settle_minutes: int = 0
    """Minutes at the start of a fetch whose rows the builder leaves unused (its settling)."""


class FeatureBuilder(Protocol):
    """The runtime feature builder: its spec per symbol, and features from candles."""

    def spec(self, symbol: str) -> FeatureSpecInfo:
        """Names (in order) and hash of the features this builder makes for ``symbol``."""

    def build(self, symbol: str, candles: pd.DataFrame) -> pd.DataFrame:
        """Features for each candle row (``timestamp``, ``close`` and every feature column)."""


class CandleSource(Protocol):
    """Where the latest candles come from."""

    def now(self) -> float:
        """Unix seconds the source calls "now" (its clock decides what is fresh)."""

    def latest(self, symbol: str, granularity: int, bars: int) -> pd.DataFrame:
        """Up to ``bars`` newest closed candles, oldest first, columns `CANDLE_COLUMNS`."""


SETTLE_LOOKBACKS = 2
"""Look-backs after the start of the live path's candles before its rows are used."""


class SpecFeatureBuilder:
    """The shared builder from `training.features`: `spec_for(symbol)` and `build_features`.

    Higher timeframes (5m, 15m, 1h) are resampled from the fetched one-minute candles;
    fundamentals come from ``fundamentals(symbol, start, end)`` (see `CoinGeckoFundamentals`)
    for specs that have them. ``timeframes`` names, per symbol, the candles each row is when
    not one-minute ones (the model's, e.g. 1h for a model trained on hourly candles): the
    checks then fetch and build on those.
    """

    FUNDAMENTALS_DAYS = 45
    """History the 30-day fundamentals trends need, with margin."""

    def __init__(
        self,
        fundamentals: Callable[[str, int, int], pd.DataFrame] | None = None,
        timeframes: Mapping[str, str] | None = None,
    ) -> None:
        self.fundamentals = fundamentals
        self.timeframes = dict(timeframes or {})

    def _spec(self, symbol: str) -> Any:
        from training.features.spec import FeatureConfig, spec_for

        config = FeatureConfig(timeframe=self.timeframes.get(symbol, "1m"))
        return _translate(lambda: spec_for(symbol, config), symbol)

    def spec(self, symbol: str) -> FeatureSpecInfo:
        spec = self._spec(symbol)
        return FeatureSpecInfo(tuple(spec.names), str(spec.hash), SETTLE_LOOKBACKS * spec.lookback_minutes)

    def build(self, symbol: str, candles: pd.DataFrame) -> pd.DataFrame:
        from training.data.market import TIMEFRAMES
        from training.data.resample import resample_candles
        from training.features.build import build_features

        spec = self._spec(symbol)
        if len(candles) > 1 and (bar := granularity_of(candles["timestamp"])) != TIMEFRAMES[spec.base]:
            raise CheckInputError(f"{symbol}: the candles are {bar} s bars but the features are built on "
                                  f"{spec.base} candles; fetch {spec.base} candles")  # fmt: skip
        base = spec.base
        by_tf = {base: candles, **{tf: resample_candles(candles, tf) for tf in spec.timeframes if tf != base}}
        fundamentals = None
        if any(f.family == "fundamentals" for f in spec.features):
            if self.fundamentals is None:
                raise CheckInputError(f"{symbol}: its features need CoinGecko fundamentals and no CoinGecko source is set; "
                                      "set COINGECKO_API_KEY (and the CoinGecko URL on the sandbox)")  # fmt: skip
            end = int(unix_seconds(candles["timestamp"].iloc[-1:])[0])
            first = int(unix_seconds(candles["timestamp"].iloc[:1])[0])
            # The 30-day trends of the first row too (days of hourly rows reach further back).
            start = min(end, first) - self.FUNDAMENTALS_DAYS * 86_400
            source = self.fundamentals
            fundamentals = _translate(lambda: source(symbol, start, end), symbol)
        built = _translate(lambda: build_features(symbol, by_tf, fundamentals, spec), symbol)
        # The live path's history starts where its fetch starts: recursive indicators (EMA,
        # MACD, RSI) have not yet forgotten that start. Rows within SETTLE_LOOKBACKS of the
        # longest look-back after it are not used: they differ from the training file's
        # (measured on real candles: over 0.1 sd up to 3,358 minutes in for the 1h MACD).
        settle = min(len(built), SETTLE_LOOKBACKS * spec.lookback_rows)
        if settle:
            built.loc[: settle - 1, list(spec.names)] = np.nan
        return built


class CoinGeckoFundamentals:
    """Daily market data and the all-time high from CoinGecko (or the sandbox simulator)."""

    def __init__(self, api_key: str | None, base_url: str) -> None:
        self.api_key = api_key
        self.base_url = base_url

    def __call__(self, symbol: str, start: int, end: int) -> pd.DataFrame:
        from training.data.coingecko import CoinGeckoClient

        with CoinGeckoClient(self.api_key, self.base_url) as client:
            frame = client.market_chart(symbol, start, end)
            ath, ath_time = client.all_time_high(symbol)
        frame["ath"] = ath
        frame["ath_time"] = pd.Series([ath_time] * len(frame), dtype="datetime64[ns, UTC]")
        return frame


def _translate(call: Callable[[], Any], symbol: str) -> Any:
    """Run a training-package call; its errors become ours with the same one line and code."""
    try:
        return call()
    except Exception as exc:  # training errors carry exit_code; anything else is a failure
        code = getattr(exc, "exit_code", None)
        if code == 2:
            raise CheckInputError(f"{symbol}: {exc}") from exc
        if isinstance(code, int):
            raise RuntimeCheckError(f"{symbol}: {exc}") from exc
        raise


class CoinbaseCandles:
    """Latest candles from a Coinbase Exchange compatible API through `training.data.coinbase`."""

    def __init__(self, base_url: str, *, clock: Callable[[], float] = time.time, requests_per_s: float = 8.0) -> None:
        self.base_url = base_url
        self.clock = clock
        self.requests_per_s = requests_per_s

    def now(self) -> float:
        return float(self.clock())

    def latest(self, symbol: str, granularity: int, bars: int) -> pd.DataFrame:
        from training.data.coinbase import CoinbaseClient

        end = int(self.now()) // granularity * granularity  # the open time after the newest closed candle
        start = end - bars * granularity
        rows: list[np.ndarray] = []
        with CoinbaseClient(self.base_url, requests_per_s=self.requests_per_s) as client:
            for lo in range(start, end, 300 * granularity):
                hi = min(end, lo + 300 * granularity)
                rows.append(_translate(functools.partial(client.window, symbol, granularity, lo, hi), symbol))
        data = np.concatenate(rows) if rows else np.empty((0, 6))
        frame = pd.DataFrame(data, columns=["t", *CANDLE_COLUMNS[1:]])
        stamps = pd.to_datetime(frame.pop("t").astype(np.int64), unit="s", utc=True).astype("datetime64[ns, UTC]")
        frame.insert(0, "timestamp", stamps)
        return frame.drop_duplicates("timestamp").sort_values("timestamp").reset_index(drop=True)


def fresh_candles(
    frame: pd.DataFrame,
    *,
    symbol: str,
    granularity: int,
    now: float,
    max_age_bars: int = 3,
    max_gap_bars: int = FILL_TOLERANCE_BARS,
) -> pd.DataFrame:
    """The candles on a full grid, small holes filled as training fills them
    (`training.features.gaps`); refuses stale candles or a hole longer than the tolerance."""
    if frame.empty:
        raise StaleCandles(f"{symbol}: the exchange returned no recent candles; check the symbol and the exchange")
    t = unix_seconds(frame["timestamp"])
    age = now - (int(t[-1]) + granularity)  # seconds since the newest candle closed
    if age > max_age_bars * granularity:
        raise StaleCandles(
            f"{symbol}: newest candle closed {age / 60:.0f} min ago (more than {max_age_bars} bars); "
            "the feed is stale, check the exchange or the clock"
        )
    steps = np.diff(t) // granularity
    if len(steps) and steps.max() - 1 > max_gap_bars:
        at = int(np.argmax(steps))
        gap_start = pd.Timestamp(int(t[at]) + granularity, unit="s", tz="UTC")
        raise CandleGap(
            f"{symbol}: {int(steps[at]) - 1} candles missing after {gap_start:%Y-%m-%d %H:%M} UTC "
            f"(more than {max_gap_bars}); refetch, or wait for the exchange to recover"
        )
    # The one gap policy (training.features.gaps): the training build fills the same way.
    return fill_small_holes(frame.reset_index(drop=True), granularity, max_gap_bars)


def granularity_of(timestamps: Sequence[Any]) -> int:
    """Seconds per bar of a timestamp column (its most common step)."""
    t = unix_seconds(timestamps)
    if len(t) < 2:
        raise CheckInputError("too few rows to tell the bar length")
    steps, counts = np.unique(np.diff(t), return_counts=True)
    return int(steps[np.argmax(counts)])


def unix_seconds(timestamps: Any) -> np.ndarray:
    """A timestamp column (any datetime unit, UTC) as int64 unix seconds."""
    stamps = pd.to_datetime(pd.Series(timestamps), utc=True).reset_index(drop=True)
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
