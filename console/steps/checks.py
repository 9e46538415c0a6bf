"""The checklist's ``alignment`` and ``dryrun`` steps, and the glue the check commands share:
where the models and feature files are, where fresh candles come from, and how results
and gate records reach the state store.

Paths: models in ``<data_root>/models`` (the artifact root the download step fills),
feature files in ``<data_root>/features``; the gate key is ``<state_dir>/gate.key``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from console.checklist.step import Step, StepContext, StepResult, register
from console.errors import GateFailed
from console.steps.params import AlignmentParams, DryrunParams
from runtime_checks import gate as gate_mod
from runtime_checks.checks import CheckResult
from runtime_checks.errors import GateNotPassed
from runtime_checks.inputs import CoinbaseCandles, CoinGeckoFundamentals, SpecFeatureBuilder
from runtime_checks.runner import run_alignment, run_dryrun_and_gate

RESULT_EVENT = "check.result"


def models_dir(settings: Any, override: str | Path | None = None) -> Path:
    return Path(override).expanduser() if override else Path(settings.data_root) / "models"


def features_dir(settings: Any) -> Path:
    return Path(settings.data_root) / "features"


def key_file(settings: Any) -> Path:
    return Path(settings.state_dir) / gate_mod.KEY_NAME


def candle_source(settings: Any) -> CoinbaseCandles:
    """Fresh candles from the configured exchange (the sandbox's market simulator on the sandbox profile)."""
    from console.steps.data import market_urls

    return CoinbaseCandles(market_urls(settings)[0])


def feature_builder(settings: Any) -> SpecFeatureBuilder:
    """The shared feature builder, with CoinGecko fundamentals from the same place `fetch` uses."""
    from console.steps.data import coingecko_key, market_urls

    return SpecFeatureBuilder(CoinGeckoFundamentals(coingecko_key(settings), market_urls(settings)[1]))


def gate_sinks(settings: Any) -> list:
    """Where a gate record goes besides the models dir and the state store.

    The hook for an S3 copy on profiles with a bucket: each sink is called with
    ``("gate.json", body)``. Empty until `remote.storage` offers a public put of bytes.
    """
    return []


def criteria(settings: Any) -> gate_mod.GateCriteria:
    return gate_mod.GateCriteria.from_settings(settings.gate)


def store_results(store: Any, results: Iterable[CheckResult], run_id: str | None = None, step: str | None = None) -> None:
    """Each result as an event (``check.result``): what `console check` and the TUI show."""
    for r in results:
        store.add_event(run_id, step, RESULT_EVENT, r.summary, r.to_dict())


def store_gate(store: Any, record: dict[str, Any]) -> None:
    store.add_gate(passed=bool(record["passed"]), expires_at=float(record["expires_at"]),
                   feature_hash=record["feature_hash"], model_hashes=record["model_hashes"], record=record)  # fmt: skip


def latest_state_record(store: Any) -> dict[str, Any] | None:
    import json

    row = store.latest_gate()
    return json.loads(row["record"]) if row is not None else None


def latest_results(store: Any) -> list[CheckResult]:
    """The newest stored result per (check, symbol)."""
    newest: dict[tuple[str, str], CheckResult] = {}
    for event in store.events():
        if event.kind == RESULT_EVENT:
            r = CheckResult.from_dict(event.data)
            newest[(r.check, r.symbol)] = r
    return sorted(newest.values(), key=lambda r: (r.symbol, r.check))


def verify(settings: Any, store: Any, models: Path, symbols: Sequence[str] | None = None) -> dict[str, Any]:
    """`verify_gate` with the console's key and state copy; `GateFailed` (exit 4) with the reason."""
    try:
        return gate_mod.verify_gate(models, symbols=symbols, key_file=key_file(settings),
                                    state_copy=latest_state_record(store))  # fmt: skip
    except GateNotPassed as exc:
        raise GateFailed(str(exc)) from None


def alignment(settings: Any, symbols: Sequence[str] | None, models: Path) -> list[CheckResult]:
    return run_alignment(symbols, models_dir=models, features_dir=features_dir(settings),
                         builder=feature_builder(settings), candles=candle_source(settings))  # fmt: skip


def dryrun(settings: Any, store: Any, symbols: Sequence[str] | None, models: Path, iterations: int,
           on_line: Any = None, run_id: str | None = None, step: str | None = None):
    """Alignment, dry run and the gate record, stored in the state store too."""
    outcome = run_dryrun_and_gate(
        symbols, models_dir=models, features_dir=features_dir(settings), builder=feature_builder(settings),
        candles=candle_source(settings), iterations=iterations, criteria=criteria(settings),
        key_file=key_file(settings), on_line=on_line, sinks=gate_sinks(settings),
    )
    store_results(store, outcome.results, run_id, step)
    store_gate(store, outcome.record)
    return outcome


@register
class Alignment(Step):
    name = "alignment"
    Params = AlignmentParams
    retryable = False

    def plan(self, ctx: StepContext) -> str:
        return (f"compare feature names, order, count and hash for {', '.join(ctx.params.symbols)}: "
                "training file vs runtime builder vs model checkpoint")  # fmt: skip

    def run(self, ctx: StepContext) -> StepResult:
        results = alignment(ctx.settings, ctx.params.symbols, models_dir(ctx.settings))
        store_results(ctx.state, results, ctx.run_id, ctx.step_name)
        for r in results:
            ctx.log.info("%s", r.summary)
        details = {"results": [r.to_dict() for r in results]}
        bad = [r for r in results if not r.passed]
        if bad:
            return StepResult.failed("; ".join(r.summary for r in bad), details)
        return StepResult.ok(f"{len(results)} symbols aligned", details, aligned=[r.symbol for r in results])


@register
class Dryrun(Step):
    name = "dryrun"
    Params = DryrunParams
    retryable = False

    def plan(self, ctx: StepContext) -> str:
        return (f"dry run {ctx.params.iterations} iterations for {', '.join(ctx.params.symbols)} "
                "(no orders), then record the pre-live gate")  # fmt: skip

    def run(self, ctx: StepContext) -> StepResult:
        outcome = dryrun(ctx.settings, ctx.state, ctx.params.symbols, models_dir(ctx.settings), ctx.params.iterations,
                         on_line=lambda line: ctx.log.info("%s", line), run_id=ctx.run_id, step=ctx.step_name)  # fmt: skip
        details = {"results": [r.to_dict() for r in outcome.results], "gate": outcome.record["reasons"]}
        if not outcome.passed:
            raise GateFailed(f"gate failed: {outcome.record['reasons'][0]}",
                             hint=f"{len(outcome.record['reasons'])} reason(s); see `console gate status`")
        return StepResult.ok(f"gate passed for {', '.join(outcome.record['symbols'])}, expires in "
                             f"{ctx.settings.gate.expiry_hours:g} h", details, gate_id=outcome.record["id"])  # fmt: skip

