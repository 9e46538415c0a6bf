"""Market data and feature files: the work the ``fetch``, ``features`` and ``verify-counts``
steps do, shared with the ``console data`` and ``console features`` commands.

Where things are comes from `console.resources.Paths` (candles and fundamentals under the
data root, feature files in ``<data_root>/features``); where market data comes from from
`console.resources.Resources.market_urls` (the settings' URLs, the sandbox's simulator, or
the real APIs).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from console.errors import ConsoleError
from console.resources import Resources
from training.data.coinbase import CoinbaseClient, FetchReport, fetch_candles
from training.data.coingecko import CoinGeckoClient, fetch_fundamentals
from training.data.resample import ResampleCheck, check_against_minutes
from training.data.store import CandleStore
from training.features.files import BuildReport, build_feature_file, feature_path, features_folder, load_inputs
from training.features.io import FeatureFileError, read_feature_meta
from training.features.spec import expected_counts, spec_for

DAY = 86_400
FUNDAMENTALS_LEAD_DAYS = 35
"""Fundamentals are fetched this far before the candles: the 30-day trends need them."""


class CountMismatch(ConsoleError):
    """Feature files whose counts, names or hash differ from the configuration (exit 1)."""


@dataclass
class FetchOutcome:
    """What `fetch_all` did."""

    reports: list[FetchReport]
    fundamentals_rows: dict[str, int]
    checks: list[ResampleCheck]

    def summary(self) -> str:
        candles = sum(r.candles for r in self.reports)
        symbols = sorted({r.symbol for r in self.reports})
        bad = [c for c in self.checks if not c.ok]
        tail = f"; {len(bad)} timeframe(s) disagree with resampled 1m" if bad else ""
        return f"fetched {candles} candles for {', '.join(symbols)}{tail}"


ProgressFn = Callable[[str, int, int], None]


def fetch_all(
    resources: Resources,
    symbols: Sequence[str],
    timeframes: Sequence[str],
    start: int,
    end: int,
    *,
    fundamentals: bool = True,
    data_root: Path | None = None,
    progress: ProgressFn | None = None,
    cancelled: threading.Event | None = None,
    log: logging.Logger | None = None,
) -> FetchOutcome:
    """Fetch candles (and fundamentals) for every symbol and timeframe into the store, then
    check the higher timeframes against resampled 1m candles."""
    store = CandleStore(data_root or resources.paths.data)
    urls = resources.market_urls()
    gecko = None
    if fundamentals:
        gecko = CoinGeckoClient(
            resources.coingecko_key(), urls.coingecko, ids=dict(resources.settings.features.coingecko_ids)
        )
    reports: list[FetchReport] = []
    rows: dict[str, int] = {}
    checks: list[ResampleCheck] = []
    try:
        with CoinbaseClient(urls.coinbase) as client:
            for symbol in symbols:
                for tf in timeframes:
                    report = fetch_candles(
                        client,
                        store,
                        symbol,
                        tf,
                        start,
                        end,
                        progress=functools.partial(progress, f"{symbol} {tf}") if progress else None,
                        cancelled=cancelled,
                    )
                    reports.append(report)
                    if log:
                        log.info("%s", report.summary())
                if gecko is not None:
                    rows[symbol] = fetch_fundamentals(gecko, store, symbol, start - FUNDAMENTALS_LEAD_DAYS * DAY, end)
                if "1m" in timeframes:
                    for tf in timeframes:
                        if tf != "1m":
                            checks.append(check_against_minutes(store, symbol, tf))
    finally:
        if gecko is not None:
            gecko.close()
    return FetchOutcome(reports, rows, checks)


def build_all(
    resources: Resources,
    symbols: Sequence[str],
    *,
    data_root: Path | None = None,
    out: Path | None = None,
    timeframe: str = "1m",
) -> list[BuildReport]:
    """Build the feature file of every symbol from the store, on ``timeframe`` rows (a longer
    base than 1m goes to its own folder, `training.features.files.features_folder`)."""
    store = CandleStore(data_root or resources.paths.data)
    config = replace(resources.feature_config(), timeframe=timeframe)
    reports = []
    for symbol in symbols:
        spec = spec_for(symbol, config)
        candles, fundamentals = load_inputs(store, spec)
        folder = out or features_folder(resources.paths.features, timeframe)
        reports.append(build_feature_file(spec, candles, fundamentals, folder))
    return reports


@dataclass(frozen=True)
class CountRow:
    """One symbol's verification: expected and found counts, and whether the hash matches."""

    symbol: str
    expected: int
    found: int | None
    problem: str

    @property
    def ok(self) -> bool:
        return not self.problem


def verify_counts(
    resources: Resources, symbols: Sequence[str], *, out: Path | None = None, timeframe: str = "1m"
) -> list[CountRow]:
    """Compare each feature file with the configured count and the current spec (on ``timeframe`` rows)."""
    config = replace(resources.feature_config(), timeframe=timeframe)
    expected = expected_counts(config, tuple(symbols))
    rows = []
    for symbol in symbols:
        spec = spec_for(symbol, config)
        path = feature_path(out or features_folder(resources.paths.features, timeframe), symbol)
        try:
            meta = read_feature_meta(path)
        except FeatureFileError as exc:
            rows.append(CountRow(symbol, expected[symbol], None, str(exc)))
            continue
        problems = []
        if meta.feature_count != expected[symbol]:
            problems.append(f"{meta.feature_count} features, expected {expected[symbol]}")
        if meta.feature_names != spec.names:
            missing = [n for n in spec.names if n not in meta.feature_names]
            extra = [n for n in meta.feature_names if n not in spec.names]
            what = []
            if missing:
                what.append(f"missing {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}")
            if extra:
                what.append(f"extra {', '.join(extra[:3])}{'...' if len(extra) > 3 else ''}")
            problems.append("; ".join(what) or "names in another order")
        elif meta.feature_hash != spec.hash:
            problems.append("built from another spec (hash differs): rebuild with `console features build`")
        rows.append(CountRow(symbol, expected[symbol], meta.feature_count, "; ".join(problems)))
    return rows


def fetch_range(days: int | None, start: str | None, end: str | None, now: float | None = None) -> tuple[int, int]:
    """[start, end) unix seconds from ``--days`` or ``--start/--end`` (dates are UTC)."""
    from training.data.market import check_range, to_unix

    now_s = int(time.time() if now is None else now)
    if start or end:
        s = to_unix(start) if start else now_s - (days or 30) * DAY
        e = to_unix(end) if end else now_s
    else:
        s, e = now_s - (days or 30) * DAY, now_s
    check_range(s, e)
    return s, e
