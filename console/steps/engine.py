"""The ``engine`` checklist's six steps (seed runbook 003): per-coin heads on a shared encoder.

    engine-symbols   resolve top20 / top150 / top400 / A-USD,B-USD to the exchange's products
    engine-data      candles, fundamentals and feature files; short histories skipped with the reason
                     (``--backend batch``: one fetch array job, each child fetching its own coins)
    engine-costs     fee from configuration, spread and slippage from each coin's order book
    engine-encoder   the shared PCA over every coin's training rows (its hash pins every head)
    engine-train     the heads: here (sequential / parallel / hybrid) or as one Batch array job
    engine-summary   runs/<stamp>/status.json, summary/<stamp>/engine_summary.json; exit 4 when
                     no head passed its after-cost gate

The work is `console.engine_work`'s; these steps only call it and hand outputs on.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from console import engine_work as work
from console.checklist.step import Step, StepContext, StepParams, StepResult, Symbol, register
from console.engine_progress import CoinEvents
from console.errors import EXIT_GATE, EXIT_USAGE, UsageError
from console.outputs import StepOutputs


class EngineParams(StepParams):
    symbol_set: Annotated[str, AfterValidator(work.check_symbol_set)] = "top20"
    """``top20``, ``top150``, ``top400`` or ``A-USD,B-USD`` (engine.target_symbols in the seed)."""
    symbols: list[Symbol] | None = None
    """``console run --symbols`` overrides the set with these."""
    days: int = Field(14, ge=1, le=3650)
    fee_bps: float = Field(10.0, ge=0, le=500)
    """Taker fee per side (the account's fee tier when known)."""
    cost_notional: float = Field(1000.0, gt=0)
    """The order size (quote currency) slippage is measured for."""
    n_components: int = Field(50, ge=1, le=1000)
    horizon: int = Field(5, ge=1, le=10_000)
    longest_feature_window: int = Field(200, ge=0, le=100_000)
    mode: Literal["sequential", "parallel", "hybrid"] = "hybrid"
    max_concurrent: int = Field(2, ge=1, le=64)
    symbol_timeout_s: float = Field(2700.0, gt=0)
    """Per coin (45 minutes by default)."""
    symbol_retries: int = Field(2, ge=0, le=10)
    force: bool = False
    """Retrain coins the resume ledger says are finished."""
    backend: str = "local"
    """``local`` (this machine) or ``batch`` (one AWS Batch array job)."""
    children: int = Field(2, ge=1, le=10_000)
    """Batch array size."""
    min_trades: int = Field(30, ge=0)
    head_engine: Literal["lightgbm", "xgboost"] = "lightgbm"

    def head_params(self) -> dict[str, Any]:
        return {
            "split": {"horizon": self.horizon, "longest_feature_window": self.longest_feature_window},
            "head": {"engine": self.head_engine},
            "encoder": {"n_components": self.n_components},
            "gates": {"min_trades": self.min_trades},
        }


class SymbolsOut(StepOutputs):
    symbols: list[str] = []


class DataOut(StepOutputs):
    usable: list[str] = []
    skipped: dict[str, str] = {}
    features_url: str = ""
    """With the ``batch`` backend: the ``s3://`` prefix the fetch job's children uploaded the
    feature files to (the encoder comes from their moments, the heads job reads the files there)."""
    feature_sha256: dict[str, str] = {}
    """Each such coin's feature file's checksum as its fetch child recorded it: the heads'
    children refuse a file that is not that one."""


class CostsOut(StepOutputs):
    costs: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    """Coins delisted since the data step (no order book): left out of the encoder and the heads."""


class EncoderOut(StepOutputs):
    hash: str = ""
    components: int = 0
    shared_features: int = 0


class TrainOut(StepOutputs):
    coins: dict[str, dict[str, Any]] = {}
    seconds: float = 0.0


class Tally:
    """Hundreds of coins in one progress line: counts by state, the slowest so far, the failed."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.counts: dict[str, int] = {}
        self.failed: list[str] = []
        self.slowest: tuple[float, str] = (0.0, "")

    def add(self, o: work.CoinOutcome) -> tuple[int, int, str]:
        self.slowest = max(self.slowest, (float(o.figures.get("seconds", 0.0)), o.symbol))
        self.counts[o.state] = self.counts.get(o.state, 0) + 1
        if o.state != "ok":
            self.failed.append(o.symbol)
        done = sum(self.counts.values())
        states = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        failed = (
            f"; failed {', '.join(self.failed[-3:])}{' ...' if len(self.failed) > 3 else ''}" if self.failed else ""
        )
        return done, self.total, f"{states}; slowest {self.slowest[1]} {self.slowest[0]:.0f}s{failed}"


def _tell_failed(ctx: StepContext, symbol: str, state: str, why: str) -> None:
    """An ``engine.symbol_failed`` event (a notification: `console.notify`) for a coin that did not make it."""
    if state not in ("ok", "succeeded"):
        ctx.emit("engine.symbol_failed", f"{symbol} {state}: {why}"[:300], symbol=symbol, state=state)


def _tell_skipped(ctx: StepContext, symbol: str, state: str, why: str) -> None:
    """A coin the data step could not use: told as failed (a notification) and shown as skipped."""
    _tell_failed(ctx, symbol, state, why)
    if state != "ok":
        CoinEvents(ctx.emit).state(symbol, "skipped", why)


def _usable(ctx: StepContext) -> list[str]:
    data = ctx.output_of("engine-data", DataOut)
    costs = ctx.output_of("engine-costs", CostsOut)
    gone = set(costs.skipped) if costs else set()
    return [s for s in data.usable if s not in gone] if data else []


@register
class EngineSymbols(Step):
    name = "engine-symbols"
    Params = EngineParams
    Outputs = SymbolsOut

    def plan(self, ctx: StepContext) -> str:
        return f"resolve {','.join(ctx.params.symbols) if ctx.params.symbols else ctx.params.symbol_set}"

    def run(self, ctx: StepContext) -> StepResult:
        wanted = ",".join(ctx.params.symbols) if ctx.params.symbols else ctx.params.symbol_set
        try:
            symbols = work.resolve_symbols(ctx.resources, wanted)
        except UsageError as exc:
            return StepResult.failed(str(exc), {"exit_code": EXIT_USAGE})
        CoinEvents(ctx.emit).queued(symbols)
        return StepResult.ok(f"{len(symbols)} coins: {', '.join(symbols[:8])}{' ...' if len(symbols) > 8 else ''}",
                             {"symbols": symbols}, outputs=SymbolsOut(symbols=symbols))  # fmt: skip


@register
class EngineData(Step):
    name = "engine-data"
    Params = EngineParams
    Outputs = DataOut

    def plan(self, ctx: StepContext) -> str:
        return f"fetch {ctx.params.days} days of candles and build features for every coin"

    def run(self, ctx: StepContext) -> StepResult:
        resolved = ctx.output_of("engine-symbols", SymbolsOut)
        symbols = resolved.symbols if resolved else []
        done: list[work.CoinOutcome] = []

        def coin(o: work.CoinOutcome) -> None:
            done.append(o)
            ctx.log.info("%s: %s %s", o.symbol, o.state, o.why)
            _tell_skipped(ctx, o.symbol, o.state, o.why)
            ctx.progress(len(done), len(symbols), o.symbol)
            ctx.check_cancelled()

        if ctx.params.backend == "batch":
            return self._on_batch(ctx, symbols, coin)
        outcomes = work.fetch_and_build(ctx.resources, symbols, ctx.params.days, coin)
        usable = [o.symbol for o in outcomes if o.state == "ok"]
        skipped = {o.symbol: o.why for o in outcomes if o.state != "ok"}
        return self._result(usable, skipped, "")

    def _on_batch(self, ctx: StepContext, symbols: list[str], coin: Any) -> StepResult:
        """Fundamentals here (CoinGecko's key stays here), candles and features by the Batch children."""
        import shutil

        from console.engine_batch import fetch_on_batch
        from console.market_data import fetch_range
        from training.data.store import CandleStore

        window = fetch_range(ctx.params.days, None, None)
        outcomes = work.fetch_fundamentals(ctx.resources, symbols, window, coin)
        staged = ctx.run_dir / "fundamentals"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        store = CandleStore(ctx.resources.paths.data)
        for o in outcomes:
            if o.state == "ok" and store.fundamentals_path(o.symbol).is_file():
                shutil.copy2(store.fundamentals_path(o.symbol), staged / f"{o.symbol}.parquet")
        skipped = {o.symbol: o.why for o in outcomes if o.state != "ok"}
        fetched, url = fetch_on_batch(ctx, [o.symbol for o in outcomes if o.state == "ok"], window, staged)
        for symbol, row in fetched.items():
            if row.get("state") != "succeeded":
                skipped[symbol] = str(row.get("why") or row.get("state"))
                _tell_skipped(ctx, symbol, "skipped", skipped[symbol])
        figures = {
            "candle_requests": sum(int(row.get("requests") or 0) for row in fetched.values()),
            "hosts": len({row.get("host") for row in fetched.values() if row.get("host")}),
            "child_seconds": round(sum(float(row.get("seconds") or 0.0) for row in fetched.values()), 2),
        }
        ctx.log.info("the Batch children asked the exchange %(candle_requests)d times from %(hosts)d hosts", figures)
        usable = [s for s, r in fetched.items() if r.get("state") == "succeeded"]
        sums = {s: str(fetched[s]["sha256"]["features"]) for s in usable}
        return self._result(usable, skipped, url, figures, sums)

    @staticmethod
    def _result(
        usable: list[str], skipped: dict[str, str], url: str, figures: Any = None, sums: dict[str, str] | None = None
    ) -> StepResult:
        if not usable:
            if not skipped:
                return StepResult.failed("no coin to fetch: engine-symbols chose none; check --symbols", {})
            first, why = next(iter(skipped.items()))
            return StepResult.failed(
                f"no coin is usable: {len(skipped)} skipped (the first, {first}: {why})", {"skipped": skipped}
            )
        where = " on Batch" if url else ""
        return StepResult.ok(f"{len(usable)} coins ready{where}, {len(skipped)} skipped (short history or no data)",
                             {"skipped": skipped, "features_url": url, **(figures or {})},
                             outputs=DataOut(usable=usable, skipped=skipped, features_url=url,
                                             feature_sha256=sums or {}))  # fmt: skip


@register
class EngineCosts(Step):
    name = "engine-costs"
    Params = EngineParams
    Outputs = CostsOut

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        return f"measure spread and slippage for {p.cost_notional:g} from each order book, fee {p.fee_bps:g} bps"

    def run(self, ctx: StepContext) -> StepResult:
        data = ctx.output_of("engine-data", DataOut)
        costs, gone = work.measure_costs(
            ctx.resources, list(data.usable) if data else [], fee_bps=ctx.params.fee_bps,
            notional=ctx.params.cost_notional,
        )  # fmt: skip
        for symbol, why in gone.items():
            ctx.log.info("%s: skipped %s", symbol, why)
            _tell_failed(ctx, symbol, "skipped", why)
            CoinEvents(ctx.emit).state(symbol, "skipped", why)
        per_coin = {k: v for k, v in costs.items() if k != "default"}
        if not per_coin:
            return StepResult.failed(f"no coin has an order book any more ({len(gone)} delisted)", {"skipped": gone})
        spreads = sorted(v["spread_bps"] for v in per_coin.values())
        median = spreads[len(spreads) // 2] if spreads else 0.0
        left = f"; {len(gone)} delisted since, skipped" if gone else ""
        return StepResult.ok(f"costs of {len(per_coin)} coins (median spread {median:.2f} bps){left}",
                             {"costs": costs, "skipped": gone}, outputs=CostsOut(costs=costs, skipped=gone))  # fmt: skip


@register
class EngineEncoder(Step):
    name = "engine-encoder"
    Params = EngineParams
    Outputs = EncoderOut

    def plan(self, ctx: StepContext) -> str:
        return f"fit the shared PCA encoder ({ctx.params.n_components} components) on every coin's training rows"

    def run(self, ctx: StepContext) -> StepResult:
        data = ctx.output_of("engine-data", DataOut)
        if data and data.features_url:  # fetched on Batch: the children sent their coins' moments
            digest, components, shared = work.fit_encoder_from_moments(
                ctx.resources, _usable(ctx), ctx.params.head_params(), ctx.run_dir / "moments"
            )
        else:
            digest, components, shared = work.fit_encoder(ctx.resources, _usable(ctx), ctx.params.head_params())
        return StepResult.ok(f"encoder {digest[:19]}... : {components} components over {shared} shared features",
                             outputs=EncoderOut(hash=digest, components=components, shared_features=shared))  # fmt: skip


@register
class EngineTrain(Step):
    name = "engine-train"
    Params = EngineParams
    Outputs = TrainOut

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        where = f"{p.children} Batch children" if p.backend == "batch" else f"{p.mode} here"
        return f"train a LightGBM head per coin ({where}), judged after costs"

    def run(self, ctx: StepContext) -> StepResult:
        p = ctx.params
        costs = ctx.output_of("engine-costs", CostsOut)
        began = time.monotonic()
        symbols = _usable(ctx)
        if p.backend == "batch":
            from console.engine_batch import train_on_batch

            data = ctx.output_of("engine-data", DataOut)
            features = sums = None
            if data and data.features_url:
                features, sums = data.features_url, data.feature_sha256 or None
                if sums is None:  # a data step from before the checksums were recorded
                    ctx.log.warning(
                        "this run's data step recorded no feature checksums; the heads read the files unchecked"
                    )
            coins = train_on_batch(ctx, symbols, p.head_params(), costs.costs if costs else {}, features, sums)
        else:
            cap = {"sequential": 1, "parallel": len(symbols), "hybrid": p.max_concurrent}[p.mode]
            tally, board = Tally(len(symbols)), CoinEvents(ctx.emit)

            def coin(o: work.CoinOutcome) -> None:
                ctx.log.info("%s: %s %s", o.symbol, o.state, o.why)
                if o.state != "ok":  # heads trained are told as they finish (on_done)
                    board.state(o.symbol, o.state, o.why)
                ctx.progress(*tally.add(o))

            outcomes = work.train_local(
                ctx.resources, symbols, p.head_params(), costs.costs if costs else {}, max_concurrent=cap,
                timeout_s=p.symbol_timeout_s, retries=p.symbol_retries, force=p.force, on_coin=coin,
                on_start=lambda symbol: board.state(symbol, "running"),
                on_done=lambda o: board.state(o.symbol, "done", o.why, o.figures.get("seconds")),
            )  # fmt: skip
            coins = {o.symbol: {"state": o.state, "why": o.why, **o.figures} for o in outcomes}
        for symbol, row in coins.items():
            _tell_failed(ctx, symbol, str(row.get("state")), str(row.get("why", "")))
        seconds = time.monotonic() - began
        passed = sum(1 for c in coins.values() if c.get("passed"))
        return StepResult.ok(f"{len(coins)} heads in {seconds:.1f} s; {passed} passed the after-cost gate",
                             {"coins": coins}, outputs=TrainOut(coins=coins, seconds=seconds))  # fmt: skip


@register
class EngineSummary(Step):
    name = "engine-summary"
    Params = EngineParams
    retryable = False

    def plan(self, ctx: StepContext) -> str:
        return "write the run's status and engine summary; champions only for heads that passed"

    def run(self, ctx: StepContext) -> StepResult:
        trained = ctx.output_of("engine-train", TrainOut)
        data = ctx.output_of("engine-data", DataOut)
        encoder = ctx.output_of("engine-encoder", EncoderOut)
        costs = ctx.output_of("engine-costs", CostsOut)
        coins = dict(trained.coins) if trained else {}
        champions = sorted(s for s, c in coins.items() if c.get("passed"))
        failed = sorted(s for s, c in coins.items() if c.get("state") == "failed")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        table = {
            "coins": coins,
            "skipped": {**(data.skipped if data else {}), **(costs.skipped if costs else {})},
            "champions": champions,
            "failed": failed,
            "encoder": encoder.hash if encoder else "",
            "train_seconds": trained.seconds if trained else 0.0,
        }
        path = work.write_summary(ctx.resources, ctx.run_id, stamp, table)
        line = f"{len(champions)} of {len(coins)} heads became champion ({len(failed)} failed); summary {path}"
        if not champions:
            return StepResult.failed(f"gate failed: no head earned after costs against its baselines; {line}",
                                     {**table, "exit_code": EXIT_GATE})  # fmt: skip
        return StepResult.ok(line, table)
