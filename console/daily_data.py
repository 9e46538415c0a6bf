"""The investment system's daily pipeline: `console data daily | backfill` and reading its window.

For each trading day it builds the context row and the asset features
(`training.families.investment.build`) from three public sources over HTTP
(`training.data.daily_sources`: Stooq bars, FRED's DGS10/DGS2, GDELT's tone), then writes one
partition per table and day to the data bucket, in the layout training reads
(`training.families.investment.data.partition_key`)::

    context/date=YYYY-MM-DD/context.parquet      features/date=YYYY-MM-DD/features.parquet

Point in time: a day's figures use only what is known at its close. Bars and Treasury yields are
the day's closing values; the news tone of a trading day is GDELT's tone of the *previous*
calendar day, the last whole day of news before the close (the tone of the day itself is only
complete at midnight). A test truncates every input at a day and compares that day's rows with
a build over the whole range (`tests/console/test_daily_data.py`).

``--days N`` counts trading days (partitions), the unit ``--max-days`` of training reads.
Everything is fetched and checked before the first partition is written: bad data writes nothing.
"""

from __future__ import annotations

import io
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import pandas as pd

from console.errors import UsageError
from training.data.daily_sources import FRED_URL, GDELT_URL, STOOQ_URL, DailySources
from training.families.investment import CONTEXT_SYMBOLS
from training.families.investment.build import WARMUP_DAYS, asset_table, context_table
from training.families.investment.data import check_table, partition_key, write_table

if TYPE_CHECKING:
    from console.resources import Resources

DATA_STORE = "s3://investment-system-data"
"""The seed's data bucket (``models/`` beside the daily partitions)."""
UNIVERSE: tuple[str, ...] = (
    "XLB", "XLC", "XLE", "XLF", "XLI", "XLK", "XLP", "XLU", "XLV", "XLY", "QQQ", "IWM", "EFA", "EEM", "GLD", "SLV",
    "XLRE", "SMH", "XBI", "KRE", "XHB", "XME", "XOP", "IBB", "IYR", "DIA", "MDY", "EWJ", "EWZ", "FXI", "USO", "DBC",
)  # fmt: skip
"""The default asset universe: 32 US sector, industry, country and asset-class ETFs (the sandbox
serves the same). Fewer than about 30 leave the health model's daily cross-sectional correlation
too noisy for its test to tell a real edge from luck (``scripts/bench/health_gate_null.py``)."""
CLOSE_HOUR_UTC = 21
"""A day's bars are final after the US close (21:00 UTC)."""
_WARMUP_CALENDAR_DAYS = WARMUP_DAYS * 7 // 5 + 21
"""Calendar days fetched before the first day built: the 63 trading days its windows need, and
room for holidays."""
MAX_BACKFILL_DAYS = 3000


@dataclass(frozen=True)
class Built:
    """One or more days' tables, checked, and what went into them."""

    context: pd.DataFrame
    features: pd.DataFrame
    days: list[str]
    requests: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def sources_for(resources: "Resources") -> DailySources:
    """The daily sources the settings name: ``daily_urls``, else on the sandbox profile the market
    simulator, else the public services. On the simulator without FRED_API_KEY, a key made for this
    process (the simulator checks only its form)."""
    settings = resources.settings
    urls = {"stooq": STOOQ_URL, "fred": FRED_URL, "gdelt": GDELT_URL}
    simulated = settings.is_sandbox and any(name not in settings.daily_urls for name in urls)
    market = resources.sandbox().market_url if simulated else None
    for name in urls:
        urls[name] = settings.daily_urls.get(name) or market or urls[name]
    key = settings.fred_api_key.get_secret_value() if settings.fred_api_key is not None else None
    if not key and simulated and "fred" not in settings.daily_urls:
        key = secrets.token_hex(16)
    return DailySources(stooq_url=urls["stooq"], fred_url=urls["fred"], gdelt_url=urls["gdelt"], fred_key=key)


def last_closed_day(now: float | None = None) -> date:
    stamp = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    return stamp.date() if stamp.hour >= CLOSE_HOUR_UTC else stamp.date() - timedelta(days=1)


def parse_day(text: str | None, now: float | None = None) -> date:
    """``--date``: YYYY-MM-DD, not after the last closed day; default that day."""
    last = last_closed_day(now)
    if text is None:
        return last
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--date {text!r} is not a date", hint="use YYYY-MM-DD") from None
    if day > last:
        raise UsageError(f"{day} has not closed yet (the last closed day is {last})", hint="give an earlier --date")
    return day


def check_assets(symbols: Sequence[str]) -> list[str]:
    out = [s.strip().upper() for s in symbols if s.strip()]
    bad = [s for s in out if not s.replace(".", "").replace("-", "").isalnum() or len(s) > 12]
    if bad or not out:
        raise UsageError(f"asset symbol(s) {', '.join(bad) or '(none)'} are not ticker symbols", hint="e.g. XLK,QQQ")
    if len(set(out)) != len(out):
        raise UsageError("an asset symbol is given twice")
    return out


@dataclass(frozen=True)
class Inputs:
    """Daily closes (date index, one column a symbol), yields (DGS10, DGS2) and tone (by day)."""

    closes: pd.DataFrame
    yields: pd.DataFrame
    tone: pd.Series

    def until(self, day: date) -> "Inputs":
        """Everything stamped after ``day`` left out: what was known at its close."""
        end = pd.Timestamp(day)
        return Inputs(self.closes.loc[:end], self.yields.loc[:end], self.tone.loc[:end])


def fetch_inputs(sources: DailySources, assets: Sequence[str], first: date, last: date) -> Inputs:
    """Everything the days ``first``..``last`` need, their warm-up included."""
    start = first - timedelta(days=_WARMUP_CALENDAR_DAYS)
    symbols = [*CONTEXT_SYMBOLS, *[a for a in assets if a not in CONTEXT_SYMBOLS]]
    closes = pd.concat([sources.stooq_closes(s, start, last) for s in symbols], axis=1).sort_index()
    closes.columns = symbols
    yields = pd.concat([sources.fred_series(s, start, last) for s in ("DGS10", "DGS2")], axis=1).sort_index()
    yields.columns = ["DGS10", "DGS2"]
    tone = sources.gdelt_tone(start - timedelta(days=1), last - timedelta(days=1))
    return Inputs(closes, yields, tone)


def build(inputs: Inputs, assets: Sequence[str], days: Sequence[date]) -> Built:
    """The checked context rows and asset features of ``days`` (each must be a trading day with
    every symbol's bar)."""
    wanted = pd.DatetimeIndex([pd.Timestamp(d) for d in days])
    closes = inputs.closes
    # Whole-frame lookups: a backfill of thousands of days is one pass, not one per day and symbol.
    holes = closes.loc[wanted[wanted.isin(closes.index)]].isna()
    lacking = {
        str(d.date()): list(closes.columns[row])
        for d, row in zip(holes.index, holes.to_numpy(), strict=True)
        if row.any()
    }
    missing = [str(d.date()) for d in wanted if d not in closes.index]
    if missing:
        raise UsageError(
            f"no bars for {_few(missing)} (not a trading day, or the source has not published it)",
            hint="give a trading day",
        )
    if lacking:
        day, syms = next(iter(lacking.items()))
        raise UsageError(
            f"{day}: no bar for {', '.join(syms)} ({len(lacking)} day(s) lack bars)", hint="check the symbols"
        )
    rows = closes.loc[: wanted.max()].dropna()
    tone = inputs.tone.copy()
    tone.index = tone.index + pd.Timedelta(days=1)  # the previous day's tone, known at the close
    context = context_table(rows, inputs.yields, tone)
    features = asset_table(rows, list(assets))
    context = context[context["date"].isin(wanted)].reset_index(drop=True)
    features = features[features["date"].isin(wanted)].reset_index(drop=True)
    built_days = set(context["date"])
    short = [str(d.date()) for d in wanted if d not in built_days]
    if short:
        raise UsageError(f"too little history before {_few(short)} for the 63-day windows", hint="give a later --date")
    context = check_table(context, "context", where="daily context")
    features = check_table(features, "features", where="daily features")
    return Built(context, features, [f"{d:%Y-%m-%d}" for d in wanted])


def trading_days(inputs: Inputs, last: date, count: int) -> list[date]:
    """The newest ``count`` days up to ``last`` that have bars."""
    index = inputs.closes.loc[: pd.Timestamp(last)].dropna().index
    return [d.date() for d in index[-count:]]


def run_days(resources: "Resources", assets: Sequence[str], last: date, count: int) -> Built:
    """Fetch and build the newest ``count`` trading days up to ``last``."""
    started = time.perf_counter()
    first = last - timedelta(days=count * 7 // 5 + 10)
    with sources_for(resources) as sources:
        inputs = fetch_inputs(sources, assets, first, last)
        requests = sources.requests
    fetched = time.perf_counter()
    days = trading_days(inputs, last, count) if count > 1 else [last]
    built = build(inputs, assets, days)
    seconds = {"fetch": round(fetched - started, 3), "build": round(time.perf_counter() - fetched, 3)}
    return Built(built.context, built.features, built.days, requests, seconds)


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_partitions(store: Any, built: Built, *, workers: int = 8) -> list[str]:
    """One partition per table and day (each replaced whole); the keys written."""
    store.ensure_bucket()
    jobs: list[tuple[str, bytes]] = []
    for day in built.days:
        stamp = pd.Timestamp(day)
        jobs.append((partition_key("context", day), _parquet(built.context[built.context["date"] == stamp])))
        jobs.append((partition_key("features", day), _parquet(built.features[built.features["date"] == stamp])))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda job: store.put_bytes(*job), jobs))
    return [key for key, _ in jobs]


def read_window(
    store: Any, last: date, max_days: int, dest: Path, *, progress: Callable[[str], None] | None = None
) -> tuple[Path, Path, list[str]]:
    """The newest ``max_days`` partitions of both tables up to ``last`` from ``store``, checked, as
    ``dest/context.parquet`` and ``dest/features.parquet``; the days found. Weekdays without a
    partition are looked for back to 1.5 times the window, and not past 64 weekdays in a row without
    one (a hole no window reaches across)."""
    candidates = [d for i in range(int(max_days * 7 / 5 * 1.5) + 10) if (d := last - timedelta(days=i)).weekday() < 5]

    def get(day: date) -> tuple[date, bytes | None, bytes | None]:
        context = store.get_bytes(partition_key("context", day.isoformat()))
        features = store.get_bytes(partition_key("features", day.isoformat())) if context is not None else None
        return day, context, features

    found: list[tuple[date, bytes, bytes]] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for start in range(0, len(candidates), 64):
            before = len(found)
            for day, context, features in pool.map(get, candidates[start : start + 64]):
                if context is not None and features is not None and len(found) < max_days:
                    found.append((day, context, features))
            if len(found) >= max_days or len(found) == before:
                break  # enough, or 64 weekdays without a partition: a hole no window reaches across
    if progress:
        progress(f"{len(found)} day(s) of partitions up to {last}")
    found.sort()
    context = pd.concat([pd.read_parquet(io.BytesIO(c)) for _, c, _ in found], ignore_index=True) if found else None
    features = pd.concat([pd.read_parquet(io.BytesIO(f)) for _, _, f in found], ignore_index=True) if found else None
    days = [d.isoformat() for d, _, _ in found]
    if context is None or features is None:
        raise UsageError(f"no daily partitions up to {last} in the data bucket", hint="run `console data backfill`")
    context = check_table(context, "context", where="the data bucket's context")
    features = check_table(features, "features", where="the data bucket's features")
    dest.mkdir(parents=True, exist_ok=True)
    return write_table(context, dest / "context.parquet"), write_table(features, dest / "features.parquet"), days


def _few(items: Sequence[str], shown: int = 3) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")
