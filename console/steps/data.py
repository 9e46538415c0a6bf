"""The checklist's first three steps: ``fetch``, ``features`` and ``verify-counts``.

The work itself is `console.market_data`'s (shared with ``console data`` and ``console
features``); where market data comes from is the resources' (`Resources.market_urls`).
"""

from __future__ import annotations

from dataclasses import replace

from console.checklist.step import Step, StepContext, StepResult, register
from console.errors import Interrupted
from console.market_data import build_all, fetch_all, fetch_range, verify_counts
from console.outputs import FeaturesOutputs, FetchOutputs
from console.steps.params import FeaturesParams, FetchParams, VerifyCountsParams
from training.data.coinbase import FetchInterrupted
from training.data.store import CandleStore
from training.features.files import features_folder
from training.features.spec import expected_counts


@register
class Fetch(Step):
    name = "fetch"
    Params = FetchParams
    Outputs = FetchOutputs

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        extra = " and CoinGecko fundamentals" if p.fundamentals else ""
        return f"fetch {p.days} days of {', '.join(p.timeframes)} candles{extra} for {', '.join(p.symbols)}"

    def run(self, ctx: StepContext) -> StepResult:
        p = ctx.params
        start, end = fetch_range(p.days, None, None)
        try:
            outcome = fetch_all(
                ctx.resources,
                p.symbols,
                p.timeframes,
                start,
                end,
                fundamentals=p.fundamentals,
                progress=lambda label, d, t: ctx.progress(d, t, label),
                cancelled=ctx.cancelled,
                log=ctx.log,
            )
        except FetchInterrupted as exc:
            # What arrived is saved; a resumed run asks only for the rest.
            raise Interrupted(str(exc)) from exc
        store = CandleStore(ctx.resources.paths.data)
        gaps = {f"{r.symbol} {r.timeframe}": store.gap_report(r.symbol, r.timeframe).summary() for r in outcome.reports}
        disagreements = [c.summary() for c in outcome.checks if not c.ok]
        details = {
            "gaps": gaps,
            "resample_checks": [c.summary() for c in outcome.checks],
            "fundamentals_rows": outcome.fundamentals_rows,
        }
        if disagreements:
            return StepResult.failed("higher timeframes disagree with 1m candles: " + "; ".join(disagreements), details)
        return StepResult.ok(
            outcome.summary(), details, outputs=FetchOutputs(candles=sum(r.candles for r in outcome.reports))
        )


@register
class Features(Step):
    name = "features"
    Params = FeaturesParams
    Outputs = FeaturesOutputs

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        where = features_folder(ctx.resources.paths.features, p.timeframe)
        return f"build feature files for {', '.join(p.symbols)} on {p.timeframe} candles into {where}"

    def run(self, ctx: StepContext) -> StepResult:
        reports = []
        for i, symbol in enumerate(ctx.params.symbols):
            ctx.check_cancelled()
            reports.extend(build_all(ctx.resources, [symbol], timeframe=ctx.params.timeframe))
            ctx.log.info("%s", reports[-1].summary())
            ctx.progress(i + 1, len(ctx.params.symbols), symbol)
        summary = ", ".join(f"{r.symbol} {r.features}" for r in reports)
        return StepResult.ok(
            f"built features: {summary}",
            {r.symbol: {"rows": r.rows, "features": r.features, "path": str(r.path)} for r in reports},
            outputs=FeaturesOutputs(feature_hashes={r.symbol: r.feature_hash for r in reports}),
        )


@register
class VerifyCounts(Step):
    name = "verify-counts"
    Params = VerifyCountsParams

    def plan(self, ctx: StepContext) -> str:
        config = replace(ctx.resources.feature_config(), timeframe=ctx.params.timeframe)
        expected = expected_counts(config, tuple(ctx.params.symbols))
        return "verify feature counts: " + ", ".join(f"{s} {n}" for s, n in expected.items())

    def run(self, ctx: StepContext) -> StepResult:
        rows = verify_counts(ctx.resources, ctx.params.symbols, timeframe=ctx.params.timeframe)
        table = [{"symbol": r.symbol, "expected": r.expected, "found": r.found, "problem": r.problem} for r in rows]
        bad = [r for r in rows if not r.ok]
        if bad:
            return StepResult.failed(
                "feature counts differ: " + "; ".join(f"{r.symbol}: {r.problem}" for r in bad), {"table": table}
            )
        return StepResult.ok(
            "feature counts match: " + ", ".join(f"{r.symbol} {r.found}" for r in rows), {"table": table}
        )
