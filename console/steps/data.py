"""The checklist's first three steps -- ``fetch``, ``features``, ``verify-counts`` -- and the
glue the ``console data`` and ``console features`` commands share with them.

Where things are: candles and fundamentals under ``<data_root>`` (``candles/``,
``fundamentals/``), feature files in ``<data_root>/features``. Where market data comes
from: ``coinbase_url`` / ``coingecko_url`` when set; otherwise, on the sandbox profile,
the sandbox daemon's market simulator (started on demand); otherwise the real APIs.
The CoinGecko key is ``settings.coingecko_api_key`` (COINGECKO_API_KEY); the sandbox's
simulator asks for none, so on the sandbox profile without a key a fixed non-secret
placeholder is sent.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from console.checklist.step import Step, StepContext, StepResult, register
from console.errors import ConsoleError, Interrupted
from console.steps.params import FeaturesParams, FetchParams, VerifyCountsParams
from training.data import coinbase, coingecko
from training.data.coinbase import CoinbaseClient, FetchInterrupted, FetchReport, fetch_candles
from training.data.coingecko import CoinGeckoClient, fetch_fundamentals
from training.data.resample import ResampleCheck, check_against_minutes
from training.data.store import CandleStore
from training.features.files import BuildReport, build_feature_file, feature_path, load_inputs
from training.features.io import FeatureFileError, read_feature_meta
from training.features.spec import FeatureConfig, expected_counts, spec_for

DAY = 86_400
FUNDAMENTALS_LEAD_DAYS = 35
"""Fundamentals are fetched this far before the candles: the 30-day trends need them."""
SANDBOX_PLACEHOLDER_KEY = "sandbox-simulator"  # not a secret: the simulator checks no key


class CountMismatch(ConsoleError):
    """Feature files whose counts, names or hash differ from the configuration (exit 1)."""


def data_dir(settings: Any, override: str | Path | None = None) -> Path:
    return Path(override).expanduser() if override else Path(settings.data_root)


def features_dir(settings: Any, override: str | Path | None = None) -> Path:
    return Path(override).expanduser() if override else Path(settings.data_root) / "features"


def feature_config(settings: Any) -> FeatureConfig:
    """The feature configuration from ``[features]`` in the settings."""
    f = settings.features
    return FeatureConfig.from_mapping(
        {
            "multi_timeframe_symbols": list(f.multi_timeframe_symbols),
            "counts": dict(f.expected_counts),
            "symbols": list(f.expected_counts),
        }
    )


def market_urls(settings: Any) -> tuple[str, str]:
    """(Coinbase base URL, CoinGecko base URL) the settings point at."""
    cb, cg = settings.coinbase_url, settings.coingecko_url
    if (not cb or not cg) and settings.is_sandbox:
        from console.steps.cloud import sandbox_endpoints

        market = sandbox_endpoints(settings).market_url
        if not market:
            raise ConsoleError(
                "the sandbox has no market simulator", hint="restart it with `console sandbox down` then `console sandbox up`"
            )
        cb = cb or market
        cg = cg or f"{market}/api/v3"
    return cb or coinbase.DEFAULT_URL, cg or coingecko.DEFAULT_URL


def coingecko_key(settings: Any) -> str | None:
    key = settings.coingecko_api_key
    if key is not None and key.get_secret_value():
        return key.get_secret_value()
    return SANDBOX_PLACEHOLDER_KEY if settings.is_sandbox and not settings.coingecko_url else None


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
    settings: Any,
    symbols: Sequence[str],
    timeframes: Sequence[str],
    start: int,
    end: int,
    *,
    fundamentals: bool = True,
    data_root: Path | None = None,
    progress: ProgressFn | None = None,
    cancelled: threading.Event | None = None,
    log: Any = None,
) -> FetchOutcome:
    """Fetch candles (and fundamentals) for every symbol and timeframe into the store, then
    check the higher timeframes against resampled 1m candles."""
    store = CandleStore(data_root or data_dir(settings))
    cb_url, cg_url = market_urls(settings)
    gecko = None
    if fundamentals:
        gecko = CoinGeckoClient(coingecko_key(settings), cg_url, ids=dict(settings.features.coingecko_ids))
    reports: list[FetchReport] = []
    rows: dict[str, int] = {}
    checks: list[ResampleCheck] = []
    try:
        with CoinbaseClient(cb_url) as client:
            for symbol in symbols:
                for tf in timeframes:
                    label = f"{symbol} {tf}"
                    report = fetch_candles(
                        client, store, symbol, tf, start, end,
                        progress=(lambda d, t, label=label: progress(label, d, t)) if progress else None,
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


def build_all(settings: Any, symbols: Sequence[str], *, data_root: Path | None = None, out: Path | None = None) -> list[BuildReport]:
    """Build the feature file of every symbol from the store."""
    store = CandleStore(data_root or data_dir(settings))
    config = feature_config(settings)
    reports = []
    for symbol in symbols:
        spec = spec_for(symbol, config)
        candles, fundamentals = load_inputs(store, spec)
        reports.append(build_feature_file(spec, candles, fundamentals, out or features_dir(settings)))
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


def verify_counts(settings: Any, symbols: Sequence[str], *, out: Path | None = None) -> list[CountRow]:
    """Compare each feature file with the configured count and the current spec."""
    config = feature_config(settings)
    expected = expected_counts(config, tuple(symbols))
    rows = []
    for symbol in symbols:
        spec = spec_for(symbol, config)
        path = feature_path(out or features_dir(settings), symbol)
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


# ------------------------------------------------------------------ steps


@register
class Fetch(Step):
    name = "fetch"
    Params = FetchParams

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        extra = " and CoinGecko fundamentals" if p.fundamentals else ""
        return f"fetch {p.days} days of {', '.join(p.timeframes)} candles{extra} for {', '.join(p.symbols)}"

    def run(self, ctx: StepContext) -> StepResult:
        p = ctx.params
        start, end = fetch_range(p.days, None, None)
        try:
            outcome = fetch_all(
                ctx.settings, p.symbols, p.timeframes, start, end,
                fundamentals=p.fundamentals,
                progress=lambda label, d, t: ctx.progress(d, t, label),
                cancelled=ctx.cancelled,
                log=ctx.log,
            )
        except FetchInterrupted as exc:
            # What arrived is saved; a resumed run asks only for the rest.
            raise Interrupted(str(exc)) from exc
        store = CandleStore(data_dir(ctx.settings))
        gaps = {f"{r.symbol} {r.timeframe}": store.gap_report(r.symbol, r.timeframe).summary() for r in outcome.reports}
        disagreements = [c.summary() for c in outcome.checks if not c.ok]
        details = {"gaps": gaps, "resample_checks": [c.summary() for c in outcome.checks],
                   "fundamentals_rows": outcome.fundamentals_rows}
        if disagreements:
            return StepResult.failed("higher timeframes disagree with 1m candles: " + "; ".join(disagreements), details)
        return StepResult.ok(outcome.summary(), details, candles=sum(r.candles for r in outcome.reports))


@register
class Features(Step):
    name = "features"
    Params = FeaturesParams

    def plan(self, ctx: StepContext) -> str:
        return f"build feature files for {', '.join(ctx.params.symbols)} into {features_dir(ctx.settings)}"

    def run(self, ctx: StepContext) -> StepResult:
        reports = []
        for i, symbol in enumerate(ctx.params.symbols):
            ctx.check_cancelled()
            reports.extend(build_all(ctx.settings, [symbol]))
            ctx.log.info("%s", reports[-1].summary())
            ctx.progress(i + 1, len(ctx.params.symbols), symbol)
        summary = ", ".join(f"{r.symbol} {r.features}" for r in reports)
        return StepResult.ok(
            f"built features: {summary}",
            {r.symbol: {"rows": r.rows, "features": r.features, "path": str(r.path)} for r in reports},
            feature_hashes={r.symbol: r.feature_hash for r in reports},
        )


@register
class VerifyCounts(Step):
    name = "verify-counts"
    Params = VerifyCountsParams

    def plan(self, ctx: StepContext) -> str:
        expected = expected_counts(feature_config(ctx.settings), tuple(ctx.params.symbols))
        return "verify feature counts: " + ", ".join(f"{s} {n}" for s, n in expected.items())

    def run(self, ctx: StepContext) -> StepResult:
        rows = verify_counts(ctx.settings, ctx.params.symbols)
        table = [{"symbol": r.symbol, "expected": r.expected, "found": r.found, "problem": r.problem} for r in rows]
        bad = [r for r in rows if not r.ok]
        if bad:
            return StepResult.failed(
                "feature counts differ: " + "; ".join(f"{r.symbol}: {r.problem}" for r in bad), {"table": table}
            )
        return StepResult.ok("feature counts match: " + ", ".join(f"{r.symbol} {r.found}" for r in rows), {"table": table})
