"""The simulator's daily sources for the investment system (seed runbook 001): Stooq-style daily
bars, FRED's Treasury yields and GDELT's news tone, over one seeded daily process.

APIs (`DailySourcesApi`, one line of `remote.sandbox.market_server.EXTRA_APIS`)::

    GET /q/d/l/?s=spy.us&i=d[&d1=YYYYMMDD&d2=YYYYMMDD]
        -> text/csv ``Date,Open,High,Low,Close,Volume``, oldest first (Stooq's download);
           an unknown symbol is answered ``No data`` (200, text), as Stooq does.
    GET /fred/series/observations?series_id=DGS10|DGS2&api_key=K&file_type=json
            [&observation_start=YYYY-MM-DD&observation_end=YYYY-MM-DD]
        -> {"observations": [{"date", "value"}]}; a day the bond market was shut has value ".";
           a missing key, or one that is not 32 lower-case letters and digits, is FRED's 400.
    GET /api/v2/doc/doc?query=Q&mode=timelinetone&format=json&startdatetime=&enddatetime=
        -> {"timeline": [{"series": "Average Tone", "data": [{"date": "YYYYMMDDT000000Z", "value"}]}]},
           one point per calendar day.

All three answer 429 with Retry-After past the simulator's request rate (per client
address). A day's bars and yields are served once it has closed (21:00 UTC, the US close); its tone once it has ended.

The daily process
-----------------
Unlike the minute market, the daily process is fixed to the calendar: the bars of a given
date are the same whichever day the sandbox was started (history does not change), for a
given seed and mode. It runs over calendar days from `START` to `END`; prices move on
trading days only (weekdays except 1 Jan, 4 Jul and 25 Dec); FRED also skips 11 Nov
(Veterans Day: bond market shut, stocks open), so the pipeline's carry-forward is used.

``structured``: a hidden regime follows a Markov chain over calendar days (it stays with
probability `STAY`, about four weeks on average) over the five regimes below. Each sets
SPY's daily drift and volatility, the credit and bond legs (HYG falls and IEF/TLT rise with
stress), VIXY (against SPY, up with stress), the 10y-2y slope, and the news tone, which turns
`TONE_LEAD_DAYS` calendar days *before* the market does:

==============  ===========  ==========  =========  =============
regime          SPY drift/d  SPY vol/d   news tone  10y-2y slope
==============  ===========  ==========  =========  =============
calm_uptrend    +0.40 %      0.3 %       +1.5       +1.6
risk_on_trend   +0.60 %      0.9 %       +0.7       +1.0
risk_off_trend  -0.60 %      0.9 %       -0.7       -0.2
choppy          0            0.4 %        0.0       +0.4
high_vol_panic  -1.00 %      4.0 %       -1.8       -0.8
==============  ===========  ==========  =========  =============

These are deliberately strong (a real market's are far milder) so that a small model
trained for seconds on a CPU has something real to find. The long-run average of each series'
regime-driven move (its drift without the noise, over 2015-2040) is taken out of every day's
move, a constant, so that strong regimes compounded over decades leave prices in a plausible
range; each series is scaled to its base level on `LEVEL_DAY` (a constant factor). Nothing
else changes: a pull back to a level would cancel the assets' quality drift, and taking out the
*sample* mean of the moves would hand every asset a constant drift made of its own future noise,
something to learn even in the random walk (which is left as drawn). The 10-year yield is an AR(1) around 4 %. Each asset of `ASSETS` has a
slowly drifting hidden quality (AR(1), persistence `QUALITY_PERSISTENCE` a day): a better
asset drifts up and swings less, so its next month's risk-adjusted return is higher.

``random_walk``: every series moves by independent draws of one constant volatility, the
tone and the slope are noise; nothing can be learned and no model may pass its gate.
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import numpy as np

START = date(2015, 1, 1)
END = date(2040, 12, 31)
CLOSE_HOUR_UTC = 21
LEVEL_DAY = date(2026, 1, 2)
"""Every series is at its base level (100 for the context ETFs, 50 for the assets) on this day."""
STAY = 0.965
TONE_LEAD_DAYS = 8
QUALITY_PERSISTENCE = 0.997
CONTEXT = ("SPY", "HYG", "IEF", "TLT", "VIXY")
ASSETS = (
    "XLB", "XLC", "XLE", "XLF", "XLI", "XLK", "XLP", "XLU", "XLV", "XLY", "QQQ", "IWM", "EFA", "EEM", "GLD", "SLV",
    "XLRE", "SMH", "XBI", "KRE", "XHB", "XME", "XOP", "IBB", "IYR", "DIA", "MDY", "EWJ", "EWZ", "FXI", "USO", "DBC",
)  # fmt: skip
"""The asset universe the simulator serves (besides the context symbols)."""
FIRST_ASSETS = 16
"""The universe was these first sixteen until the health model's test needed a wider cross-section
(with sixteen, one day's rank correlation is too noisy for even the hidden quality to beat the
relative-strength rule on some seeds); the rest are drawn after everything else, so that a seed's
regimes, context series and first sixteen assets are the same as before the universe grew."""
SERIES = ("DGS10", "DGS2")
_MOVES = np.array(
    [  # SPY drift, SPY vol, tone level, slope level (the table above)
        (0.0040, 0.003, 1.5, 1.6),
        (0.0060, 0.009, 0.7, 1.0),
        (-0.0060, 0.009, -0.7, -0.2),
        (0.0, 0.004, 0.0, 0.4),
        (-0.0100, 0.040, -1.8, -0.8),
    ]
)
_SHUT = {(1, 1), (7, 4), (12, 25)}
_BOND_SHUT = _SHUT | {(11, 11)}
_FRED_KEY = re.compile(r"^[a-z0-9]{32}$")


class DailyProcess:
    """Closes of every symbol, yields and tone over calendar days `START`..`END`."""

    def __init__(self, seed: int, mode: str) -> None:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(f"daily-{mode}".encode())])
        self.days = [START + timedelta(days=i) for i in range((END - START).days + 1)]
        n = len(self.days)
        self.trading = np.array([d.weekday() < 5 and (d.month, d.day) not in _SHUT for d in self.days])
        self.bond = np.array([d.weekday() < 5 and (d.month, d.day) not in _BOND_SHUT for d in self.days])
        names = [*CONTEXT, *ASSETS]
        first, rest = FIRST_ASSETS, len(ASSETS) - FIRST_ASSETS
        if mode == "structured":
            regimes = _chain(n + TONE_LEAD_DAYS, rng)
            moves = _MOVES[regimes]
            now, ahead = moves[:n], moves[TONE_LEAD_DAYS:]
            shocks = rng.standard_normal((n, 5 + first))
            self.tone = ahead[:, 2] + 0.25 * rng.standard_normal(n)
            slope = now[:, 3] + 0.1 * rng.standard_normal(n)
            quality = _quality(n, first, rng)
            beta = rng.uniform(0.9, 1.1, first)
            ten = _ar1(4.0, 0.995, 0.03 * rng.standard_normal(n))
            shocks = np.hstack([shocks, rng.standard_normal((n, rest))])
            quality = np.hstack([quality, _quality(n, rest, rng)])
            beta = np.concatenate([beta, rng.uniform(0.9, 1.1, rest)])
            every = _structured_moves(now, shocks, quality, beta)
            # The long-run average of the moves' regime-driven part (no noise in it: nothing a model
            # could learn from) comes out, so prices do not run off over decades.
            expected = _structured_moves(now, np.zeros_like(shocks), quality, beta)[self.trading].mean(axis=0)
            every = every - expected
            self.regimes = regimes[:n]
        elif mode == "random_walk":
            every = np.empty((n, len(names)))
            every[:, :4] = 0.0002 + 0.011 * rng.standard_normal((n, 4))
            every[:, 4] = 0.03 * rng.standard_normal(n)
            self.tone = rng.standard_normal(n)
            slope = 0.6 + 0.15 * rng.standard_normal(n)
            every[:, 5 : 5 + first] = 0.0002 + 0.015 * rng.standard_normal((n, first))
            ten = _ar1(4.0, 0.995, 0.03 * rng.standard_normal(n))
            every[:, 5 + first :] = 0.0002 + 0.015 * rng.standard_normal((n, rest))
            self.regimes = np.full(n, -1)
        else:
            raise ValueError(f"unknown daily mode {mode!r}")
        self.yields = {"DGS10": ten, "DGS2": ten - slope}
        mask = self.trading.astype(np.float64)
        self.closes: dict[str, np.ndarray] = {}
        self.opens: dict[str, np.ndarray] = {}
        for i, name in enumerate(names):
            base = 100.0 if i < len(CONTEXT) else 50.0
            moves_ = every[:, i] * mask
            log_close = np.cumsum(moves_)
            log_close += np.log(base) - log_close[(LEVEL_DAY - START).days]  # at its base level in 2026
            gap = 0.3 * moves_ * mask  # part of the day's move happens overnight
            self.closes[name] = np.exp(log_close)
            self.opens[name] = np.exp(np.concatenate([[np.log(base)], log_close[:-1]]) + gap)

    def index(self, day: date) -> int:
        return (day - START).days

    def bars_csv(self, symbol: str, first: date, last: date) -> str:
        close, open_ = self.closes[symbol], self.opens[symbol]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["Date", "Open", "High", "Low", "Close", "Volume"])
        rng = np.random.default_rng(zlib.crc32(symbol.encode()))
        volume = rng.integers(2_000_000, 60_000_000)
        for i in range(max(0, self.index(first)), min(len(self.days) - 1, self.index(last)) + 1):
            if not self.trading[i]:
                continue
            c, o = float(close[i]), float(open_[i])
            swing = abs(c - o) + 0.004 * c
            v = int(volume * (1.0 + 0.5 * abs(np.sin(i * 0.7))))
            writer.writerow([self.days[i].isoformat(), _price(o), _price(max(c, o) + 0.5 * swing),
                             _price(max(min(c, o) - 0.5 * swing, 0.5 * min(c, o))), _price(c), v])  # fmt: skip
        return out.getvalue()


def _price(value: float) -> str:
    """Six significant digits, as a plain decimal."""
    return repr(float(f"{value:.6g}"))


@lru_cache(maxsize=4)
def daily_process(seed: int, mode: str) -> DailyProcess:
    """The process for ``(seed, mode)``, built once (about 9,500 calendar days, tens of ms)."""
    return DailyProcess(seed, mode)


def _structured_moves(now: np.ndarray, shocks: np.ndarray, quality: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Each day's log move of every series (`CONTEXT` then `ASSETS`) from the regimes' table rows
    ``now`` and standard normal ``shocks`` (one column a series)."""
    drift, vol = now[:, 0], now[:, 1]
    stress = (vol - 0.006) / 0.022  # 0 calm .. 1 panic
    spy = drift + vol * shocks[:, 0]
    ief = 0.0004 * stress + 0.003 * shocks[:, 2]
    out = np.empty_like(shocks)
    out[:, 0] = spy
    out[:, 1] = 0.5 * spy - 0.0008 * stress + 0.002 * shocks[:, 1]  # HYG
    out[:, 2] = ief
    out[:, 3] = 2.0 * ief + 0.002 * shocks[:, 3]  # TLT
    out[:, 4] = -3.0 * spy - 0.002 + 0.01 * stress + 0.02 * shocks[:, 4]  # VIXY
    out[:, 5:] = spy[:, None] * beta[None, :] + 0.0008 * quality + 0.014 * np.exp(-0.6 * quality) * shocks[:, 5:]
    return out


def _ar1(level: float, keep: float, shocks: np.ndarray) -> np.ndarray:
    """``x[t] = level + keep * (x[t-1] - level) + shocks[t]`` from ``x[-1] = level``."""
    out = np.empty_like(shocks)
    x = 0.0
    for t, shock in enumerate(shocks.tolist()):
        x = keep * x + shock
        out[t] = x
    return level + out


def _chain(n: int, rng: np.random.Generator) -> np.ndarray:
    states = np.empty(n, dtype=np.int64)
    states[0] = rng.integers(len(_MOVES))
    stay = rng.random(n) < STAY
    step = rng.integers(1, len(_MOVES), n)
    for t in range(1, n):
        states[t] = states[t - 1] if stay[t] else (states[t - 1] + step[t]) % len(_MOVES)
    return states


def _quality(n: int, assets: int, rng: np.random.Generator) -> np.ndarray:
    q = np.empty((n, assets))
    q[0] = rng.standard_normal(assets)
    shocks = np.sqrt(1.0 - QUALITY_PERSISTENCE**2) * rng.standard_normal((n, assets))
    for t in range(1, n):
        q[t] = QUALITY_PERSISTENCE * q[t - 1] + shocks[t]
    return q


def _day(text: str | None, fmt: str) -> date | None:
    if not text:
        return None
    return datetime.strptime(text[: len(datetime(2000, 1, 1).strftime(fmt))], fmt).date()


class DailySourcesApi:
    """Stooq bars, FRED observations and GDELT tone (see the module docstring)."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim

    def _process(self) -> DailyProcess:
        return daily_process(self.sim.seed, self.sim.mode)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.sim.clock(), timezone.utc)

    def _last_closed(self) -> date:
        now = self._now()
        return now.date() if now.hour >= CLOSE_HOUR_UTC else now.date() - timedelta(days=1)

    def answer(self, parts: list[str], query: dict[str, str], headers: Any) -> tuple[int, dict[str, str], Any] | None:
        route = (
            self._stooq
            if parts == ["q", "d", "l"]
            else self._fred
            if parts == ["fred", "series", "observations"]
            else self._gdelt
            if parts == ["api", "v2", "doc", "doc"]
            else None
        )
        if route is None:
            return None
        wait = self.sim.rate_wait("daily")
        if wait > 0:
            return 429, {"Retry-After": str(max(1, int(np.ceil(wait))))}, {"message": "rate limited"}
        try:
            return route(query)
        except ValueError:
            return 400, {}, {"error_code": 400, "error_message": "Bad Request. A date is not of the documented form."}

    def _stooq(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        ticker = query.get("s", "").lower()
        symbol = ticker[:-3].upper() if ticker.endswith(".us") else ""
        if symbol not in CONTEXT and symbol not in ASSETS:
            return 200, {"Content-Type": "text/plain"}, b"No data"
        first = _day(query.get("d1"), "%Y%m%d") or START
        last = min(_day(query.get("d2"), "%Y%m%d") or END, self._last_closed())
        body = self._process().bars_csv(symbol, first, last)
        return 200, {"Content-Type": "text/csv"}, body.encode()

    def _fred(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if not _FRED_KEY.match(query.get("api_key", "")):
            return 400, {}, {
                "error_code": 400,
                "error_message": "Bad Request.  The value for variable api_key is not a 32 character "
                "alpha-numeric lower-case string.  Read https://fred.stlouisfed.org/docs/api/api_key.html",
            }  # fmt: skip
        series = query.get("series_id", "")
        if series not in SERIES:
            return 400, {}, {"error_code": 400, "error_message": "Bad Request.  The series does not exist."}
        process = self._process()
        first = _day(query.get("observation_start"), "%Y-%m-%d") or START
        last = min(_day(query.get("observation_end"), "%Y-%m-%d") or END, self._last_closed())
        values = process.yields[series]
        rows = [
            {"date": process.days[i].isoformat(), "value": f"{values[i]:.2f}" if process.bond[i] else "."}
            for i in range(max(0, process.index(first)), min(len(process.days) - 1, process.index(last)) + 1)
            if process.days[i].weekday() < 5
        ]
        return 200, {}, {"realtime_start": self._now().date().isoformat(), "count": len(rows), "observations": rows}

    def _gdelt(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if query.get("mode", "").lower() != "timelinetone" or not query.get("query"):
            return 200, {"Content-Type": "text/plain"}, b"Please specify a query and mode=timelinetone."
        process = self._process()
        first = _day(query.get("startdatetime"), "%Y%m%d") or START
        last = min(_day(query.get("enddatetime"), "%Y%m%d") or END, self._now().date() - timedelta(days=1))
        data = [
            {"date": process.days[i].strftime("%Y%m%dT000000Z"), "value": round(float(process.tone[i]), 4)}
            for i in range(max(0, process.index(first)), min(len(process.days) - 1, process.index(last)) + 1)
        ]
        return 200, {}, {
            "query_details": {"title": query["query"], "date_resolution": "day"},
            "timeline": [{"series": "Average Tone", "data": data}],
        }  # fmt: skip
