"""The sandbox market simulator's price process: a seeded, regime-switching minute market.

The HTTP server that serves it (Coinbase and CoinGecko shapes) is `remote.sandbox.market_server`.

The simulator's "now" is the wall clock: it serves candles up to the last closed minute.
Which minutes of the price process it serves is anchored: a sandbox started at wall time
``S`` serves, as wall minute ``T``, the process's minute ``T - clock_shift_for(S)``, so its
first "now" is always `MARKET_ANCHOR` (2026-11-23 00:00 UTC of the process) and ``days =
30`` means the same 30 simulated days on any machine, any day; the market then advances in
real time from there. Served timestamps stay on the wall clock, so the console's own clock,
fetch windows and live checks need nothing special.

The price process
-----------------
Time is cut into 2-hour blocks (`BLOCK_MINUTES`) from 2015-01-01 UTC. A seeded Markov chain
gives each block a regime; each regime has a per-minute volatility, a drift and a lag-1
structure (`_SIGMA`, `_DRIFT`, `_THETA`):

==========  ==========  ===================  ======================  ===============
regime      vol/minute  drift (x vol/minute)  lag-1 MA coefficient    volume x
==========  ==========  ===================  ======================  ===============
calm        0.035 %     0                    +0.03                   0.7
trending    0.035 %     +/-0.40 (per block)  +0.10 (momentum)        1.1
choppy      0.070 %     0                    -0.12 (mean reversion)  1.0
panic       0.180 %     +/-0.12 (per block)  +0.08                   2.5
==========  ==========  ===================  ======================  ===============

(volatility is scaled per symbol: BTC 1.0, ETH 1.2, SOL 1.4). A trend keeps its direction
into the next block with probability 0.5 (`_TREND_PERSIST`). Minute log-returns are
``vol * (e_t + theta * e_{t-1}) + drift * vol`` with ``e`` standard normal, times an
intraday seasonality (quiet 00-06 UTC, busiest in the US afternoon). On top, liquidity
spikes (`_add_spikes`): in 3 % of minutes a sweep moves the price 3-6 volatilities on
heavy volume and gives it back over the next 3 minutes. Volume follows the seasonality,
rises with the size of the move and in panics; some quiet minutes have no trades (more for
SOL than BTC) and so no candle.

**A deliberately trending market.** The sandbox exists to run the whole retrain job on a
laptop's CPU, with a small model trained for seconds, and still see an honest gate pass;
so its trends are much stronger than real ones (a drift of 0.4 volatility units a minute
for two hours is a wild move for a real coin). Nothing else is predictable beyond the
lag-1 terms, the spikes' reversal and a gentle daily pull of the level back to the start
price. How often the sandbox's own model then passes the pre-live gate, per seed, is
what ``scripts/bench/sandbox_edge.py`` measures. ``mode="random_walk"`` sets every drift
and MA coefficient to zero and has neither spikes nor the pull back (volatility regimes
stay): that is the market on which the gate must fail.

Determinism: each UTC day's minutes come from a generator seeded by (seed, symbol, day,
mode) and are pinned to a day-level path, so any range gives the same candles whichever
range was asked first. Two years of one-minute candles take well under a second.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np
import pandas as pd

EPOCH = int(datetime(2015, 1, 1, tzinfo=timezone.utc).timestamp())
DAY = 86_400
BLOCK_MINUTES = 120
BLOCKS_PER_DAY = 12
MAX_DAYS = 40 * 366  # the process is defined from 2015 to about 2055
GRANULARITIES = (60, 300, 900, 3600)
MAX_CANDLES = 300
MARKET_ANCHOR = int(datetime(2026, 11, 23, tzinfo=timezone.utc).timestamp())
"""The process time a fresh sandbox's market starts at, whatever the seed and the date."""

REGIMES = ("calm", "trending", "choppy", "panic")
_SIGMA = np.array([0.00035, 0.00035, 0.00070, 0.00180])
_DRIFT = np.array([0.0, 0.40, 0.0, 0.12])
_THETA = np.array([0.03, 0.10, -0.12, 0.08])
_TREND_PERSIST = 0.5
SPIKE_RATE = 0.03
SPIKE_SIZE = (3.0, 6.0)
SPIKE_REVERT = 3
_VOLUME_X = np.array([0.7, 1.1, 1.0, 2.5])
# Rows: from-regime; columns: to-regime (6-hour blocks).
_TRANSITIONS = np.array(
    [
        [0.40, 0.45, 0.13, 0.02],
        [0.10, 0.78, 0.10, 0.02],
        [0.15, 0.40, 0.43, 0.02],
        [0.15, 0.40, 0.10, 0.35],
    ]
)


@dataclass(frozen=True)
class Coin:
    """One simulated market: its Coinbase product, CoinGecko id and scale."""

    product_id: str
    coingecko_id: str
    name: str
    start_price: float
    vol_scale: float
    base_volume: float
    """Units traded in an average minute."""
    missing_rate: float
    """Share of quiet-hour minutes without a trade."""
    supply: float


COINS: dict[str, Coin] = {
    c.product_id: c
    for c in (
        Coin("BTC-USD", "bitcoin", "Bitcoin", 30_000.0, 1.0, 8.0, 0.002, 19.5e6),
        Coin("ETH-USD", "ethereum", "Ethereum", 2_000.0, 1.2, 60.0, 0.004, 120e6),
        Coin("SOL-USD", "solana", "Solana", 60.0, 1.4, 2_000.0, 0.02, 440e6),
    )
}
_BY_GECKO_ID = {c.coingecko_id: c for c in COINS.values()}


def clock_shift_for(started_at: float) -> int:
    """Wall time minus market time for a sandbox started at ``started_at`` (unix seconds):
    whole minutes, so that the started minute serves the process's `MARKET_ANCHOR`."""
    return int(started_at) // 60 * 60 - MARKET_ANCHOR


def _seed_words(seed: int, product_id: str, mode: str, *more: int) -> list[int]:
    return [seed & 0xFFFFFFFF, zlib.crc32(product_id.encode()), zlib.crc32(mode.encode()), *more]


def _check_mode(mode: str) -> str:
    if mode not in ("structured", "random_walk"):
        raise ValueError(f"unknown simulator mode {mode!r} (structured or random_walk)")
    return mode


@dataclass(frozen=True)
class _DayPath:
    """The day-level skeleton: block regimes, trend signs, and each day's opening log price."""

    regime: np.ndarray  # per block
    sign: np.ndarray  # per block, +1/-1
    day_open_log: np.ndarray  # per day (MAX_DAYS + 1)
    day_volume_noise: np.ndarray  # per day


@lru_cache(maxsize=32)
def _day_path(seed: int, product_id: str, mode: str) -> _DayPath:
    coin = COINS[product_id]
    rng = np.random.default_rng(_seed_words(seed, product_id, mode, 0xDA7))
    n_blocks = MAX_DAYS * BLOCKS_PER_DAY
    u = rng.random(n_blocks)
    cum = np.cumsum(_TRANSITIONS, axis=1)
    rows = cum.tolist()
    chain = [0] * n_blocks
    state = 0
    for i, x in enumerate(u.tolist()):  # a Markov chain is sequential; ~60k steps, cached
        row = rows[state]
        state = 0 if x < row[0] else 1 if x < row[1] else 2 if x < row[2] else 3
        chain[i] = state
    regime = np.array(chain, dtype=np.int8)
    # A trend keeps its direction from one block to the next with probability
    # _TREND_PERSIST (a flip is a reversal), so a run of trending blocks is one long trend.
    sign = np.cumprod(np.where(rng.random(n_blocks) < _TREND_PERSIST, 1.0, -1.0))
    structured = mode == "structured"
    sig = _SIGMA[regime] * coin.vol_scale
    theta = _THETA[regime] if structured else np.zeros(n_blocks)
    drift = (_DRIFT[regime] * sign if structured else np.zeros(n_blocks)) * sig
    # Exact mean and variance of each day's total log return given its regimes (the
    # intraday model below, seasonality and the MA term included), so that pinning a day
    # to a total drawn here leaves the minute returns' distribution unchanged.
    pos = np.arange(n_blocks) % BLOCKS_PER_DAY
    season_sum = _VOL_SEASON.reshape(BLOCKS_PER_DAY, BLOCK_MINUTES).sum(axis=1)
    day_drift = (drift * season_sum[pos]).reshape(MAX_DAYS, BLOCKS_PER_DAY).sum(axis=1)
    day_var = (sig**2 * _ma_square_sum(pos, theta)).reshape(MAX_DAYS, BLOCKS_PER_DAY).sum(axis=1)
    z = rng.standard_normal(MAX_DAYS)
    totals = day_drift + np.sqrt(day_var) * z
    opens = np.empty(MAX_DAYS + 1)
    base = np.log(coin.start_price)
    level = base
    # A gentle daily pull back to the start price keeps levels sane over decades; the
    # random walk has none (it would be a sliver of predictable drift).
    kappa = 0.01 if structured else 0.0
    for d, total in enumerate(totals.tolist()):
        opens[d] = level
        level = level + total - kappa * (level - base)
    opens[MAX_DAYS] = level
    return _DayPath(regime, sign, opens, rng.lognormal(0.0, 0.3, MAX_DAYS))


def _ma_square_sum(pos: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Sum over a block's minutes of (v_k + v_{k+1} theta)^2: the variance a block adds to
    the day's total per unit of volatility squared (v = seasonality; ends at the day's end)."""
    v = _VOL_SEASON.reshape(BLOCKS_PER_DAY, BLOCK_MINUTES)
    v_next = np.concatenate([_VOL_SEASON[1:], [0.0]]).reshape(BLOCKS_PER_DAY, BLOCK_MINUTES)
    a = (v**2).sum(axis=1)[pos]
    b = (2 * v * v_next).sum(axis=1)[pos]
    c = (v_next**2).sum(axis=1)[pos]
    return a + b * theta + c * theta**2


_HOURS = np.arange(1440) / 60.0
# Volatility and volume seasonality by minute of the UTC day: quiet Asian night, a
# London bump, busiest when London and New York overlap.
_VOL_SEASON = 0.75 + 0.25 * np.exp(-(((_HOURS - 8.5) / 2.5) ** 2)) + 0.55 * np.exp(-(((_HOURS - 15.0) / 3.0) ** 2))
_VOL_SEASON /= np.sqrt(np.mean(_VOL_SEASON**2))
_VOLUME_SEASON = _VOL_SEASON**1.5 / np.mean(_VOL_SEASON**1.5)
_QUIET = np.clip(2.0 - _VOL_SEASON, 0.2, 2.0)


def generate_minutes(
    product_id: str,
    start: int,
    end: int,
    *,
    seed: int = 7,
    mode: str = "structured",
    every_minute: bool = False,
) -> dict[str, np.ndarray]:
    """One-minute candles with open time in [start, end) (unix seconds), oldest first.

    Returns arrays ``time`` (int64 seconds), ``open``, ``high``, ``low``, ``close``,
    ``volume``; minutes without trades are absent unless ``every_minute`` (benchmarks
    that want exactly 1,440 rows a day). Deterministic in (seed, product, mode).
    """
    _check_mode(mode)
    coin = COINS[product_id]
    start = max(int(start), EPOCH)
    end = min(int(end), EPOCH + MAX_DAYS * DAY)
    if end <= start:
        return {k: np.empty(0, dtype=np.int64 if k == "time" else float) for k in _FIELDS}
    first_day = (start - EPOCH) // DAY
    last_day = (end - 1 - EPOCH) // DAY
    days = np.arange(first_day, last_day + 1)
    path = _day_path(seed, product_id, mode)
    n = len(days)
    e = np.empty((n, 1440))
    wick = np.empty((n, 2, 1440))
    vol_noise = np.empty((n, 1440))
    trade_u = np.empty((n, 1440))
    spike_u = np.empty((n, 1440))
    spike_size = np.empty((n, 1440))
    for i, d in enumerate(days):  # one generator per day: same day, same numbers, always
        rng = np.random.default_rng(_seed_words(seed, product_id, mode, int(d)))
        e[i] = rng.standard_normal(1440)
        wick[i] = np.abs(rng.standard_normal((2, 1440)))
        vol_noise[i] = rng.lognormal(0.0, 0.5, 1440)
        trade_u[i] = rng.random(1440)
        spike_u[i] = rng.random(1440)
        spike_size[i] = rng.uniform(SPIKE_SIZE[0], SPIKE_SIZE[1], 1440) * np.sign(e[i])
    blocks = days[:, None] * BLOCKS_PER_DAY + (np.arange(1440) // BLOCK_MINUTES)[None, :]
    regime = path.regime[blocks]
    structured = mode == "structured"
    sigma = _SIGMA[regime] * coin.vol_scale * _VOL_SEASON[None, :]
    theta = _THETA[regime] if structured else np.zeros_like(sigma)
    drift = _DRIFT[regime] * path.sign[blocks] if structured else np.zeros_like(sigma)
    e_prev = np.concatenate([np.zeros((n, 1)), e[:, :-1]], axis=1)
    r = sigma * (e + theta * e_prev + drift)
    spike = np.zeros_like(r)
    if structured:
        r, spike = _add_spikes(r, sigma, spike_u, spike_size)
    # Pin each day to its day-level total so levels never depend on the range asked. The
    # correction is the Gaussian bridge: each minute takes the share cov(r_t, S) / var(S)
    # of the gap, which keeps the minute returns distributed as before (no hidden drift).
    theta_next = np.concatenate([theta[:, 1:], np.zeros((n, 1))], axis=1)
    sigma_next = np.concatenate([sigma[:, 1:], np.zeros((n, 1))], axis=1)
    c = sigma + sigma_next * theta_next  # S = sum_k c_k e_k
    c_prev = np.concatenate([np.zeros((n, 1)), c[:, :-1]], axis=1)
    share = sigma * c + sigma * theta * c_prev
    share /= share.sum(axis=1, keepdims=True)
    target = path.day_open_log[days + 1] - path.day_open_log[days]
    r += (target - r.sum(axis=1))[:, None] * share
    log_close = path.day_open_log[days][:, None] + np.cumsum(r, axis=1)
    close = np.exp(log_close)
    open_ = np.exp(log_close - r)
    high = np.maximum(open_, close) * np.exp(0.6 * sigma * wick[:, 0])
    low = np.minimum(open_, close) * np.exp(-0.6 * sigma * wick[:, 1])
    activity = _VOLUME_SEASON[None, :] * _VOLUME_X[regime] * (0.5 + 0.7 * np.abs(e) + 0.5 * spike)
    volume = coin.base_volume * activity * vol_noise * path.day_volume_noise[days][:, None]
    traded = trade_u >= coin.missing_rate * _QUIET[None, :] / np.maximum(_VOLUME_X[regime], 0.7)
    times = (EPOCH + days[:, None] * DAY + np.arange(1440)[None, :] * 60).astype(np.int64)
    keep = (traded | every_minute) & (times >= start) & (times < end)
    return {
        "time": times[keep],
        "open": open_[keep],
        "high": high[keep],
        "low": low[keep],
        "close": close[keep],
        "volume": np.round(volume[keep], 8),
    }


_FIELDS = ("time", "open", "high", "low", "close", "volume")


def _add_spikes(r: np.ndarray, sigma: np.ndarray, u: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Liquidity spikes: in a share `SPIKE_RATE` of minutes a market order sweeps the book
    (a move of ``size`` volatilities, on heavy volume) and the price gives it back evenly
    over the next `SPIKE_REVERT` minutes. Each spike and its reversal sum to zero inside
    the day, so the day's total (and the pinning below) is untouched. Returns the returns
    and each minute's spike size in volatilities (for the volume)."""
    n = r.shape[1]
    at = (u < SPIKE_RATE) & (np.arange(n)[None, :] < n - SPIKE_REVERT)
    jump = np.where(at, size * sigma, 0.0)
    out = r + jump
    for k in range(1, SPIKE_REVERT + 1):
        out[:, k:] -= jump[:, :-k] / SPIKE_REVERT
    return out, np.abs(np.where(at, size, 0.0))


def aggregate(minutes: dict[str, np.ndarray], granularity: int) -> dict[str, np.ndarray]:
    """Candles of ``granularity`` seconds from one-minute candles (open, max, min, close, sum)."""
    if granularity == 60 or len(minutes["time"]) == 0:
        return minutes
    bucket = minutes["time"] // granularity * granularity
    starts = np.flatnonzero(np.concatenate([[True], bucket[1:] != bucket[:-1]]))
    ends = np.concatenate([starts[1:], [len(bucket)]]) - 1
    return {
        "time": bucket[starts],
        "open": minutes["open"][starts],
        "high": np.maximum.reduceat(minutes["high"], starts),
        "low": np.minimum.reduceat(minutes["low"], starts),
        "close": minutes["close"][ends],
        "volume": np.round(np.add.reduceat(minutes["volume"], starts), 8),
    }


def simulated_candles(
    product_id: str,
    start: int,
    end: int,
    *,
    granularity: int = 60,
    seed: int = 7,
    mode: str = "structured",
) -> pd.DataFrame:
    """Candles with open time in [start, end) as a frame (timestamp UTC, OHLCV), oldest first."""
    g = int(granularity)
    lo = start // g * g
    data = aggregate(generate_minutes(product_id, lo, end, seed=seed, mode=mode), g)
    keep = data["time"] >= start
    frame = pd.DataFrame({k: data[k][keep] for k in _FIELDS[1:]})
    frame.insert(0, "timestamp", pd.to_datetime(data["time"][keep], unit="s", utc=True).astype("datetime64[ns, UTC]"))
    return frame


def fundamentals_at(
    product_id: str, times: np.ndarray, *, seed: int = 7, mode: str = "structured"
) -> dict[str, np.ndarray]:
    """CoinGecko-like price, market cap and 24h volume (USD) at unix times.

    Daily points (times at 00:00 UTC) come from the day-level path alone (fast); others
    from the one-minute close just before ``t``.
    """
    coin = COINS[product_id]
    path = _day_path(seed, product_id, mode)
    times = np.asarray(times, dtype=np.int64)
    day = np.clip((times - EPOCH) // DAY, 0, MAX_DAYS - 1)
    price = np.exp(path.day_open_log[day])
    off_midnight = (times - EPOCH) % DAY != 0
    if off_midnight.any():
        t = times[off_midnight]
        sub = price[off_midnight]
        days_of = t // DAY
        # Dense points (hourly) from one range of minutes; sparse ones (daily over years,
        # as a clock-shifted sandbox asks) one day at a time.
        dense = len(np.unique(days_of)) * 2 >= (int(t.max()) - int(t.min())) // DAY + 1
        for mask in [np.ones(len(t), dtype=bool)] if dense else [days_of == d for d in np.unique(days_of)]:
            g = t[mask]
            minutes = generate_minutes(product_id, int(g.min()) - 3 * 3600, int(g.max()), seed=seed, mode=mode)
            idx = np.searchsorted(minutes["time"], g - 60, side="right") - 1
            ok = idx >= 0
            part = sub[mask]
            part[ok] = minutes["close"][idx[ok]]
            sub[mask] = part
        price[off_midnight] = sub
    supply = coin.supply * (1.0 + 0.00005 * day)  # slow issuance
    volume_usd = coin.base_volume * 1440 * 40 * price * path.day_volume_noise[np.maximum(day - 1, 0)]
    return {"price": price, "market_cap": price * supply, "total_volume": volume_usd}


def all_time_high(product_id: str, now: int, *, seed: int = 7, mode: str = "structured") -> tuple[float, int]:
    """The highest daily opening price up to ``now`` and the unix time of that day."""
    path = _day_path(seed, product_id, mode)
    last = int(np.clip((now - EPOCH) // DAY, 0, MAX_DAYS - 1))
    best = int(np.argmax(path.day_open_log[: last + 1]))
    return float(np.exp(path.day_open_log[best])), EPOCH + best * DAY


# --------------------------------------------------------------------------- server


def sample_inputs(
    product_id: str,
    start: int,
    end: int,
    *,
    seed: int = 7,
    mode: str = "structured",
    timeframes: tuple[str, ...] = ("1m", "5m", "15m", "1h"),
    fundamentals_lead_days: int = 40,
    every_minute: bool = False,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Feature-builder inputs straight from the generator (tests and benchmarks): candles
    per timeframe for [start, end) and daily CoinGecko-like rows from
    ``fundamentals_lead_days`` before ``start``, in the store's layouts."""
    seconds = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600}
    minutes = generate_minutes(product_id, start, end, seed=seed, mode=mode, every_minute=every_minute)
    candles = {}
    for tf in timeframes:
        data = aggregate(minutes, seconds[tf])
        frame = pd.DataFrame({k: data[k] for k in _FIELDS[1:]})
        frame.insert(0, "timestamp", pd.to_datetime(data["time"], unit="s", utc=True).astype("datetime64[ns, UTC]"))
        candles[tf] = frame
    days = np.arange((start // DAY - fundamentals_lead_days) * DAY, end, DAY, dtype=np.int64)
    values = fundamentals_at(product_id, days, seed=seed, mode=mode)
    ath, ath_time = all_time_high(product_id, int(end), seed=seed, mode=mode)
    fundamentals = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(days, unit="s", utc=True).astype("datetime64[ns, UTC]"),
            "price": values["price"],
            "market_cap": values["market_cap"],
            "total_volume": values["total_volume"],
            "ath": ath,
            "ath_time": pd.Timestamp(ath_time, unit="s", tz="UTC"),
        }
    )
    fundamentals["ath_time"] = fundamentals["ath_time"].astype("datetime64[ns, UTC]")
    return candles, fundamentals
