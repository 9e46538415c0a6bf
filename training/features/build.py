"""Build features: one function for training and for live use, so the two cannot drift.

`build_features` turns one-minute candles (plus 5m/15m/1h candles and daily CoinGecko
fundamentals where the spec needs them) into a frame with ``timestamp``, OHLCV, the
categorical ``session`` and ``volatility_regime``, and every feature in spec order.

No feature uses the future. A row is the one-minute candle that opened at ``timestamp``
and is known when it closes, one minute later; every value in it is computed from
candles closed by then:

- indicators are causal (TA-Lib and trailing windows over rows up to and including it);
- a higher-timeframe candle counts only once it has closed (a 1h candle that opened at
  10:00 is first used by the 10:59 row, which closes at 11:00);
- a fundamentals point counts from its own timestamp (CoinGecko's daily point at 00:00
  is the value at that instant), and the all-time high is the running maximum of prices
  known so far, with CoinGecko's reported ATH used only after its date.

Gaps (`training.features.gaps`): holes of up to ten one-minute candles are filled with
the previous close and zero volume; a longer hole splits the candles into segments built
apart, so no indicator, return or higher-timeframe candle bridges it (each segment has its
own warm-up, whose rows are not samples). The live path fills the same way.

Missing inputs (no fundamentals, no 5m/15m/1h candles, or inputs that stop well before
the candles do) raise `MissingFeatureInput`; nothing is ever filled with zeros.
Early rows whose windows are not yet full hold NaN; `finite_rows` drops them for files.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd
import talib

from training.data.market import TIMEFRAMES, unix_seconds
from training.errors import MissingFeatureInput
from training.features.gaps import fill_small_holes, segments
from training.features.spec import SESSIONS, FeatureDef, FeatureSpec

DAY = 86_400


def tune_for_large_builds() -> None:
    """Process-wide memory settings for building years of one-minute features.

    A two-year build allocates a few gigabytes of short-lived 8 MB arrays. On virtual
    machines page faults are dear: numpy's transparent-huge-page hint makes the kernel
    compact memory on fault (half the build's system time in our benchmark), and glibc
    returns each freed array to the kernel only to fault it in again. Call once at the
    start of a process that builds features (the CLI and the benchmark do); harmless
    elsewhere, and a no-op where the calls are unavailable.
    """
    try:
        np._core.multiarray._set_madvise_hugepage(False)  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - other numpy versions
        pass
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD: 8 MB arrays come from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep freed heap for the next array
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


class _Series:
    """One timeframe's candles as float64 arrays, with a cache of shared indicators."""

    def __init__(self, frame: pd.DataFrame, step: int) -> None:
        self.step = step
        self.open_time = unix_seconds(frame["timestamp"])
        self.close_time = self.open_time + step
        self.open = np.ascontiguousarray(frame["open"].to_numpy(dtype=np.float64))
        self.high = np.ascontiguousarray(frame["high"].to_numpy(dtype=np.float64))
        self.low = np.ascontiguousarray(frame["low"].to_numpy(dtype=np.float64))
        self.close = np.ascontiguousarray(frame["close"].to_numpy(dtype=np.float64))
        self.volume = np.ascontiguousarray(frame["volume"].to_numpy(dtype=np.float64))
        self._cache: dict[tuple, np.ndarray | tuple[np.ndarray, ...]] = {}

    def cached(self, key: tuple, make: Callable[[], np.ndarray | tuple[np.ndarray, ...]]):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def sma(self, period: int) -> np.ndarray:
        return self.cached(("sma", period), lambda: talib.SMA(self.close, period))

    def ema(self, period: int) -> np.ndarray:
        return self.cached(("ema", period), lambda: talib.EMA(self.close, period))

    def rsi(self, period: int) -> np.ndarray:
        return self.cached(("rsi", period), lambda: talib.RSI(self.close, period))

    def atr(self, period: int) -> np.ndarray:
        return self.cached(("atr", period), lambda: talib.ATR(self.high, self.low, self.close, period))

    def macd(self, fast: int, slow: int, signal: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.cached(("macd", fast, slow, signal), lambda: talib.MACD(self.close, fast, slow, signal))

    def bbands(self, period: int, nbdev: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.cached(
            ("bb", period, nbdev), lambda: talib.BBANDS(self.close, period, nbdev, nbdev, talib.MA_Type.SMA)
        )

    def returns(self, lag: int) -> np.ndarray:
        def make() -> np.ndarray:
            out = np.full(len(self.close), np.nan)
            out[lag:] = self.close[lag:] / self.close[:-lag] - 1.0
            return out

        return self.cached(("ret", lag), make)

    def volume_sma(self, period: int) -> np.ndarray:
        return self.cached(("vsma", period), lambda: talib.SMA(self.volume, period))

    def volatility(self, period: int) -> np.ndarray:
        # Population std of 1-candle returns; the first return is NaN, so start after it.
        def make() -> np.ndarray:
            r = self.returns(1)
            out = np.full(len(r), np.nan)
            if len(r) > 1:
                out[1:] = talib.STDDEV(np.ascontiguousarray(r[1:]), period, 1.0)
            return out

        return self.cached(("vol", period), make)

    def trend_sign(self) -> np.ndarray:
        """+1 above the 20-candle SMA, -1 below (the trend each timeframe votes with)."""
        return self.cached(("trend",), lambda: np.sign(self.close - self.sma(20)))


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


# ------------------------------------------------------------------ one-minute kinds


def _session_flag(s: _Series, f: FeatureDef) -> np.ndarray:
    lo, hi = SESSIONS[f.param("session")]
    hour = (s.open_time % DAY) // 3600
    return ((hour >= lo) & (hour < hi)).astype(np.float64)


def _day_cycle(s: _Series, f: FeatureDef) -> np.ndarray:
    angle = 2 * np.pi * (s.open_time % DAY) / DAY
    return np.sin(angle) if f.param("fn") == "sin" else np.cos(angle)


def _week_cycle(s: _Series, f: FeatureDef) -> np.ndarray:
    # 1970-01-01 was a Thursday: (days + 3) % 7 is 0 on Mondays.
    angle = 2 * np.pi * (((s.open_time // DAY) + 3) % 7) / 7
    return np.sin(angle) if f.param("fn") == "sin" else np.cos(angle)


def _volume_zscore(s: _Series, f: FeatureDef) -> np.ndarray:
    p = f.param("period")
    mean = talib.SMA(s.volume, p)
    std = talib.STDDEV(s.volume, p, 1.0)
    z = _ratio(s.volume - mean, std)
    # A flat window has no spread: the volume is exactly its mean, a z-score of 0.
    return np.where(np.isfinite(mean) & (std <= 0), 0.0, z)


def _bb(s: _Series, f: FeatureDef) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return s.bbands(f.param("period"), float(f.param("nbdev")))


def _macd_out(m: tuple[np.ndarray, np.ndarray, np.ndarray], output: str) -> np.ndarray:
    return m[{"macd": 0, "signal": 1, "hist": 2}[output]]


def _rsi_change(s: _Series, f: FeatureDef) -> np.ndarray:
    r = s.rsi(f.param("period"))
    lag = f.param("lag")
    out = np.full(len(r), np.nan)
    out[lag:] = r[lag:] - r[:-lag]
    return out


KINDS_1M: dict[str, Callable[[_Series, FeatureDef], np.ndarray]] = {
    "session_flag": _session_flag,
    "day_cycle": _day_cycle,
    "week_cycle": _week_cycle,
    "atr": lambda s, f: s.atr(f.param("period")),
    "range_pct": lambda s, f: _ratio(s.high - s.low, s.close),
    "range_atr": lambda s, f: _ratio(s.high - s.low, s.atr(f.param("period"))),
    "body_atr": lambda s, f: _ratio(np.abs(s.close - s.open), s.atr(f.param("period"))),
    "volume_sma": lambda s, f: s.volume_sma(f.param("period")),
    "volume_ratio": lambda s, f: _ratio(s.volume, s.volume_sma(f.param("period"))),
    "volume_trend": lambda s, f: _ratio(s.volume_sma(f.param("fast")), s.volume_sma(f.param("slow"))) - 1.0,
    "log_volume": lambda s, f: np.log1p(s.volume),
    "volume_zscore": _volume_zscore,
    "sma": lambda s, f: s.sma(f.param("period")),
    "close_to_sma": lambda s, f: _ratio(s.close, s.sma(f.param("period"))) - 1.0,
    "sma_spread": lambda s, f: _ratio(s.sma(f.param("fast")), s.sma(f.param("slow"))) - 1.0,
    "ema": lambda s, f: s.ema(f.param("period")),
    "return": lambda s, f: s.returns(f.param("lag")),
    "rsi": lambda s, f: s.rsi(f.param("period")),
    "rsi_change": _rsi_change,
    "macd": lambda s, f: _macd_out(s.macd(f.param("fast"), f.param("slow"), f.param("signal")), f.param("output")),
    "macd_hist_pct": lambda s, f: _ratio(s.macd(f.param("fast"), f.param("slow"), f.param("signal"))[2], s.close),
    "bbands": lambda s, f: _bb(s, f)[{"upper": 0, "middle": 1, "lower": 2}[f.param("output")]],
    "bb_width": lambda s, f: _ratio(_bb(s, f)[0] - _bb(s, f)[2], _bb(s, f)[1]),
    "bb_position": lambda s, f: _ratio(s.close - _bb(s, f)[2], _bb(s, f)[0] - _bb(s, f)[2]),
    "volatility": lambda s, f: s.volatility(f.param("period")),
    "volatility_ratio": lambda s, f: _ratio(s.volatility(f.param("fast")), s.volatility(f.param("slow"))),
    "atr_pct": lambda s, f: _ratio(s.atr(f.param("period")), s.close),
}

# Higher-timeframe kinds: computed on that timeframe's candles, then aligned (below).
KINDS_HTF: dict[str, Callable[[_Series, FeatureDef], np.ndarray]] = {
    "mtf_return": lambda s, f: s.returns(f.param("lag")),
    "mtf_close_to_sma": lambda s, f: _ratio(s.close, s.sma(f.param("period"))) - 1.0,
    "mtf_rsi": lambda s, f: s.rsi(f.param("period")),
    "mtf_macd": lambda s, f: _macd_out(s.macd(f.param("fast"), f.param("slow"), f.param("signal")), f.param("output")),
    "mtf_atr_pct": lambda s, f: _ratio(s.atr(f.param("period")), s.close),
    "mtf_volume_ratio": lambda s, f: _ratio(s.volume, s.volume_sma(f.param("period"))),
    "mtf_bb_position": lambda s, f: _ratio(s.close - _bb(s, f)[2], _bb(s, f)[0] - _bb(s, f)[2]),
}


# ------------------------------------------------------------------ alignment


def _last_closed(minute: _Series, htf: _Series) -> np.ndarray:
    """For each one-minute row, the index of the newest higher-timeframe candle closed by
    the time that row closes (-1 if none)."""
    return np.searchsorted(htf.close_time, minute.close_time, side="right") - 1


def _take(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    if len(values) == 0:
        return np.full(len(idx), np.nan)
    out = values[np.maximum(idx, 0)]
    out[idx < 0] = np.nan
    return out


def _check_coverage(name: str, last_known: int, minute: _Series, allowed_lag: int) -> None:
    if len(minute.close_time) and last_known < minute.close_time[-1] - allowed_lag:
        end = pd.Timestamp(last_known, unit="s", tz="UTC")
        need = pd.Timestamp(int(minute.close_time[-1]), unit="s", tz="UTC")
        raise MissingFeatureInput(
            f"{name} end at {end:%Y-%m-%d %H:%M} UTC but the candles run to {need:%Y-%m-%d %H:%M} UTC; "
            "fetch them again (`console data fetch`)"
        )


# ------------------------------------------------------------------ fundamentals


def _daily_fundamentals(fundamentals: pd.DataFrame) -> pd.DataFrame:
    """One point per UTC day (the first at or after midnight), on a full calendar; a day
    without a point repeats the day before, known from that day's midnight."""
    t = unix_seconds(fundamentals["timestamp"])
    order = np.argsort(t, kind="stable")
    t = t[order]
    day = t // DAY
    first = np.flatnonzero(np.concatenate([[True], day[1:] != day[:-1]]))
    cols = {
        c: fundamentals[c].to_numpy(dtype=np.float64)[order][first] for c in ("price", "market_cap", "total_volume")
    }
    daily = pd.DataFrame(cols, index=pd.Index(day[first], name="day"))
    daily["known"] = t[first]
    calendar = pd.RangeIndex(int(day[0]), int(day[-1]) + 1, name="day")
    daily = daily.reindex(calendar)
    filled = daily["known"].isna().to_numpy()
    daily = daily.ffill()
    known = daily["known"].to_numpy(dtype=np.float64)
    known[filled] = calendar.to_numpy()[filled] * DAY
    daily["known"] = known.astype(np.int64)
    return daily


def _fundamental_columns(
    spec_feats: list[FeatureDef], fundamentals: pd.DataFrame, minute: _Series
) -> dict[str, np.ndarray]:
    daily = _daily_fundamentals(fundamentals)
    price = daily["price"].to_numpy()
    known = daily["known"].to_numpy()
    # Strictly before the row's close: a day's point stamped at the very second a candle closes
    # (midnight) is not yet in hand when that row is built live (the runtime asks up to the last
    # candle's open), so the training file must not use it either.
    idx = np.searchsorted(known, minute.close_time, side="left") - 1
    out: dict[str, np.ndarray] = {}
    for f in spec_feats:
        if f.kind == "fund_change":
            col = daily[f.param("column")]
            values = (col / col.shift(f.param("days")) - 1.0).to_numpy()
        elif f.kind == "fund_volume_change":
            mean = daily["total_volume"].rolling(f.param("days")).mean()
            values = (mean / mean.shift(f.param("days")) - 1.0).to_numpy()
        elif f.kind == "fund_price_trend":
            values = daily["price"].pct_change(fill_method=None).rolling(f.param("days")).mean().to_numpy()
        elif f.kind == "fund_ath_distance":
            ath = np.maximum.accumulate(price)
            if "ath" in fundamentals and len(fundamentals):
                reported = float(fundamentals["ath"].iloc[-1])
                reported_at = int(pd.Timestamp(fundamentals["ath_time"].iloc[-1]).timestamp())
                ath = np.where(known >= reported_at, np.maximum(ath, reported), ath)
            out[f.name] = _ratio(minute.close, _take(ath, idx)) - 1.0
            continue
        else:  # pragma: no cover - spec and builder are written together
            raise KeyError(f.kind)
        out[f.name] = _take(values, idx)
    return out


# ------------------------------------------------------------------ the builder


def build_features(
    symbol: str,
    candles_by_tf: Mapping[str, pd.DataFrame],
    fundamentals: pd.DataFrame | None,
    spec: FeatureSpec,
    *,
    finite_only: bool = False,
) -> pd.DataFrame:
    """Every feature of ``spec`` for each candle of its base timeframe (one-minute unless
    ``spec.base`` says otherwise), in spec order.

    With ``finite_only`` the rows with any non-finite feature (the warm-up) are left out,
    as feature files want; otherwise every candle has a row.

    ``candles_by_tf`` maps the base timeframe (and "5m", "15m", "1h" when the spec has
    multi-timeframe features) to candle frames (timestamp UTC, OHLCV, oldest first). ``fundamentals``
    holds CoinGecko rows (timestamp, price, market_cap, total_volume, ath, ath_time).
    Raises `MissingFeatureInput` for an absent or stale input.
    """
    base = spec.base
    if base not in candles_by_tf or candles_by_tf[base] is None or len(candles_by_tf[base]) == 0:
        raise MissingFeatureInput(f"no {base} candles for {symbol}; fetch them first (`console data fetch`)")
    # The gap policy (training.features.gaps): small holes filled, longer ones split the
    # candles into segments that are built apart, so nothing reaches across a hole.
    step = TIMEFRAMES[base]
    frame_base = fill_small_holes(candles_by_tf[base], step)
    parts = segments(frame_base, step)
    if len(parts) == 1:
        return _build_segment(symbol, {**candles_by_tf, base: frame_base}, fundamentals, spec, finite_only)
    pieces = []
    for start, stop in parts:
        piece = frame_base.iloc[start:stop].reset_index(drop=True)
        lo, hi = piece["timestamp"].iloc[0], piece["timestamp"].iloc[-1]
        inputs: dict[str, pd.DataFrame] = {base: piece}
        for tf in spec.timeframes:
            if tf != base:  # only higher-timeframe candles wholly inside the segment
                frame = candles_by_tf.get(tf)
                if frame is not None:
                    end = frame["timestamp"] + pd.Timedelta(seconds=TIMEFRAMES[tf] - step)
                    frame = frame.loc[(frame["timestamp"] >= lo) & (end <= hi)].reset_index(drop=True)
                inputs[tf] = frame
        short = any(inputs.get(tf) is None or len(inputs[tf]) == 0 for tf in spec.timeframes if tf != base)
        if short:
            # Too short to hold one higher-timeframe candle: every row is warm-up, no sample.
            pieces.append(_nan_segment(piece, spec, finite_only))
            continue
        pieces.append(_build_segment(symbol, inputs, fundamentals, spec, finite_only))
    return pd.concat(pieces, ignore_index=True)


def _nan_segment(piece: pd.DataFrame, spec: FeatureSpec, finite_only: bool) -> pd.DataFrame:
    minute = _Series(piece, TIMEFRAMES[spec.base])
    columns = {name: np.full(len(piece), np.nan) for name in spec.names}
    return _assemble(piece, minute, spec, columns, finite_only)


def _build_segment(
    symbol: str,
    candles_by_tf: Mapping[str, pd.DataFrame],
    fundamentals: pd.DataFrame | None,
    spec: FeatureSpec,
    finite_only: bool,
) -> pd.DataFrame:
    """`build_features` on candles without a hole (one segment of the gap policy)."""
    frame_1m = candles_by_tf[spec.base]  # the rows' candles: one-minute ones unless the spec says
    minute = _Series(frame_1m, TIMEFRAMES[spec.base])
    columns: dict[str, np.ndarray] = {}

    fund_feats = [f for f in spec.features if f.family == "fundamentals"]
    if fund_feats:
        if fundamentals is None or len(fundamentals) == 0:
            raise MissingFeatureInput(
                f"no CoinGecko fundamentals for {symbol}; fetch them (`console data fetch` with COINGECKO_API_KEY set)"
            )
        _check_coverage(
            f"fundamentals for {symbol}", int(unix_seconds(fundamentals["timestamp"]).max()), minute, 2 * DAY
        )
        columns.update(_fundamental_columns(fund_feats, fundamentals, minute))

    htf: dict[str, _Series] = {}
    for tf in spec.timeframes:
        if tf == spec.base:
            continue
        frame = candles_by_tf.get(tf)
        if frame is None or len(frame) == 0:
            raise MissingFeatureInput(
                f"no {tf} candles for {symbol}, which takes multi-timeframe features; fetch them first"
            )
        htf[tf] = _Series(frame, TIMEFRAMES[tf])
        _check_coverage(f"{tf} candles for {symbol}", int(htf[tf].close_time[-1]), minute, 2 * TIMEFRAMES[tf])
    aligned = {tf: _last_closed(minute, s) for tf, s in htf.items()}
    trend = {spec.base: minute.trend_sign(), **{tf: _take(s.trend_sign(), aligned[tf]) for tf, s in htf.items()}}

    for f in spec.features:
        if f.name in columns:
            continue
        if f.kind in KINDS_1M:
            columns[f.name] = KINDS_1M[f.kind](minute, f)
        elif f.kind in KINDS_HTF:
            tf = f.param("timeframe")
            columns[f.name] = _take(KINDS_HTF[f.kind](htf[tf], f), aligned[tf])
        elif f.kind == "mtf_alignment":
            columns[f.name] = trend[f.param("a")] * trend[f.param("b")]
        elif f.kind == "mtf_alignment_score":
            columns[f.name] = np.mean([trend[tf] for tf in f.param("timeframes").split(",")], axis=0)
        else:
            raise KeyError(f"feature {f.name} has unknown kind {f.kind!r}")

    return _assemble(frame_1m, minute, spec, columns, finite_only)


def _assemble(
    frame_1m: pd.DataFrame, minute: _Series, spec: FeatureSpec, columns: dict[str, np.ndarray], finite_only: bool
) -> pd.DataFrame:
    """The output frame: base columns, categoricals, then features as one float64 block."""
    n = len(minute.close)
    keep: slice | np.ndarray = slice(None)
    if finite_only:
        ok = np.ones(n, dtype=bool)
        for name in spec.names:
            ok &= np.isfinite(columns[name])
        if not ok.all():
            first = int(np.argmax(ok)) if ok.any() else n
            # The usual case is a warm-up at the start: a slice, no copy.
            keep = slice(first, None) if ok[first:].all() else np.flatnonzero(ok)
    data: dict[str, object] = {
        "timestamp": frame_1m["timestamp"].array[keep],
        "open": minute.open[keep],
        "high": minute.high[keep],
        "low": minute.low[keep],
        "close": minute.close[keep],
        "volume": minute.volume[keep],
        "session": _session_labels(minute)[keep],
        "volatility_regime": _volatility_regime(minute)[keep],
    }
    for name in spec.names:
        data[name] = columns[name][keep]
    # Columns stay the arrays computed above (no copy into one big block).
    out = pd.DataFrame(data, copy=False)
    return out


_SESSION_LABELS = np.array(["off", "tokyo", "tokyo_london", "london", "london_new_york", "new_york"])


def _session_labels(s: _Series) -> pd.Categorical:
    hour = (s.open_time % DAY) // 3600
    # Which label each UTC hour gets: the sessions open then, overlaps named for both.
    by_hour = np.zeros(24, dtype=np.int64)
    for h in range(24):
        open_now = [n for n, (lo, hi) in SESSIONS.items() if lo <= h < hi]
        label = "_".join(open_now) if open_now else "off"
        by_hour[h] = int(np.flatnonzero(_SESSION_LABELS == label)[0])
    return pd.Categorical.from_codes(by_hour[hour], categories=list(_SESSION_LABELS))


_REGIME_LABELS = ["unknown", "low", "normal", "high"]


def _volatility_regime(s: _Series) -> pd.Categorical:
    ratio = _ratio(s.volatility(20), s.volatility(60))
    codes = np.where(np.isnan(ratio), 0, np.where(ratio < 0.8, 1, np.where(ratio > 1.25, 3, 2)))
    return pd.Categorical.from_codes(codes, categories=_REGIME_LABELS)


def finite_rows(frame: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Rows whose features are all finite (drops the warm-up at the start)."""
    keep = np.ones(len(frame), dtype=bool)
    for name in spec.names:
        keep &= np.isfinite(frame[name].to_numpy())
    if keep.all():
        return frame
    return frame.loc[keep].reset_index(drop=True)
