"""The checklist's ``alignment`` and ``dryrun`` steps, and the glue the check commands share:
where the models and feature files are, where fresh candles come from, and how results
and gate records reach the state store and S3.

Paths: models in ``<data_root>/models`` (the artifact root the download step fills),
feature files in ``<data_root>/features``; the gate key is ``<state_dir>/gate.key``.

Everything the operator typed (symbols, models dir) and every local file a check reads
(feature files, model folders, checkpoints) is checked by `check_inputs` before anything
reaches the network: the market sources are built on first use, so bad input never starts
the sandbox.

Gate records also go to the run's artifact store when the profile has one (the sandbox's
moto S3 while it runs, AWS with ``s3_bucket``): ``gates/<UTC stamp>-<record id>.json`` and
``gates/latest.json``, pass or fail, so the newest verdict is always the one there. When the
record next to the models is missing, `verify` reads ``gates/latest.json`` back; the local
rules (signature, state store copy, exact file hashes, feature hash, expiry) still judge it.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from console.checklist.step import Step, StepContext, StepResult, register
from console.errors import ConsoleError, GateFailed
from console.steps.params import AlignmentParams, DryrunParams
from console.steps.stopwatch import Stopwatch
from remote.errors import RemoteError
from runtime_checks import gate as gate_mod
from runtime_checks import models as model_files
from runtime_checks.alignment import read_training_file
from runtime_checks.checks import CheckResult
from runtime_checks.errors import CheckInputError, GateNotPassed
from runtime_checks.inputs import CoinbaseCandles, CoinGeckoFundamentals, SpecFeatureBuilder
from runtime_checks.runner import pick_symbols, run_alignment, run_dryrun_and_gate

RESULT_EVENT = "check.result"


def models_dir(settings: Any, override: str | Path | None = None) -> Path:
    return Path(override).expanduser() if override else Path(settings.data_root) / "models"


def features_dir(settings: Any) -> Path:
    return Path(settings.data_root) / "features"


def key_file(settings: Any) -> Path:
    return Path(settings.state_dir) / gate_mod.KEY_NAME


class MarketCandles:
    """Fresh candles from the configured exchange (the sandbox's market simulator on the
    sandbox profile), resolved on first use: building one never starts the sandbox."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    @cached_property
    def _source(self) -> CoinbaseCandles:
        from console.steps.data import market_urls

        return CoinbaseCandles(market_urls(self.settings)[0])

    def now(self) -> float:
        return time.time()

    def latest(self, symbol: str, granularity: int, bars: int) -> pd.DataFrame:
        return self._source.latest(symbol, granularity, bars)


class MarketFundamentals:
    """CoinGecko fundamentals from the same place `fetch` uses, resolved on first use."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    @cached_property
    def _source(self) -> CoinGeckoFundamentals:
        from console.steps.data import coingecko_key, market_urls

        return CoinGeckoFundamentals(coingecko_key(self.settings), market_urls(self.settings)[1])

    def __call__(self, symbol: str, start: int, end: int) -> pd.DataFrame:
        return self._source(symbol, start, end)


def candle_source(settings: Any) -> MarketCandles:
    return MarketCandles(settings)


def feature_builder(settings: Any) -> SpecFeatureBuilder:
    """The shared feature builder, with CoinGecko fundamentals from the same place `fetch` uses."""
    return SpecFeatureBuilder(MarketFundamentals(settings))


def check_inputs(symbols: Sequence[str] | None, models: Path, features: Path, *, need_models: bool) -> list[str]:
    """The symbols to check, once everything local a check would read is known good.

    Symbols, the models dir, each symbol's training feature file, model folder (complete and
    matching its sha256.txt) and checkpoint (feature contract, trained on that symbol);
    `CheckInputError` (exit 2) on the first problem. ``need_models`` refuses a symbol without
    a model (the alignment check); the dry run falls back to the baseline for those.
    """
    chosen = pick_symbols(models, symbols)
    for symbol in chosen:
        read_training_file(features, symbol)
        folder = model_files.model_folder(models, symbol)
        if folder is None:
            if need_models:
                raise CheckInputError(f"no trained model for {symbol} in {model_files.models_root(models)}; "
                                      "download the models (or train one) first")  # fmt: skip
            continue
        model_files.require_complete(folder)
        info, _ = model_files.read_checkpoint(folder / "model.pt")
        if info.symbol != symbol:
            raise CheckInputError(f"{folder / 'model.pt'} was trained on {info.symbol}, not {symbol}; "
                                  "download the right model")  # fmt: skip
    return chosen


# --- the gate record in S3 ---------------------------------------------------------------------

GATE_PREFIX = "gates/"
GATE_LATEST = GATE_PREFIX + "latest.json"
GATE_COPY_EVENT = "gate.copy"


def has_gate_store(settings: Any) -> bool:
    """True when the profile has an artifact store for gate records (sandbox S3, or AWS with a bucket)."""
    from console.steps.cloud import uses_sandbox

    return uses_sandbox(settings) or bool(settings.s3_bucket)


def gate_store(settings: Any, *, start: bool = True) -> Any:
    """The run's artifact store; with ``start=False`` a stopped sandbox is `SandboxNotRunning`, not started."""
    from console.steps.cloud import sandbox_endpoints, uses_sandbox
    from console.steps.cloud_sync import artifact_store

    if uses_sandbox(settings) and not start:
        sandbox_endpoints(settings, start=False)
    return artifact_store(settings)


def gate_key(record: Mapping[str, Any]) -> str:
    """``gates/<UTC stamp>-<record id>.json``: one object per record, in time order."""
    stamp = datetime.fromtimestamp(float(record["created_at"]), timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    record_id = str(record["id"])
    if not record_id.isalnum():
        raise CheckInputError(f"gate record id {record_id!r} is not plain; run `console dryrun` again")
    return f"{GATE_PREFIX}{stamp}-{record_id}.json"


class GateCopy:
    """A gate sink: puts the signed record, byte for byte, in the artifact store.

    A store that fails does not undo the local record (the file and the state store are what
    `verify` judges); the failure is kept in ``error`` and reported by `dryrun`.
    """

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.where: str | None = None
        self.error: str | None = None

    def __call__(self, name: str, body: bytes) -> None:
        try:
            key = gate_key(json.loads(body))
            # The dry run has started the sandbox already (its market lives there) unless
            # the market was pointed elsewhere; a copy is not worth starting it for.
            store = gate_store(self.settings, start=False)
            store.ensure_bucket()
            store.put_bytes(key, body)
            store.put_bytes(GATE_LATEST, body)  # last: the pointer never names a record not there
            self.where = store.describe() + key
        except (RemoteError, ConsoleError, CheckInputError) as exc:
            self.error = str(exc)

    def report(self) -> str | None:
        if self.where:
            return f"gate record copied to {self.where}"
        if self.error:
            return f"gate record NOT copied to the artifact store: {self.error}"
        return None


def gate_sinks(settings: Any) -> list:
    """Where a gate record goes besides the models dir and the state store: the run's
    artifact store when the profile has one. Each sink is called with ``("gate.json", body)``."""
    return [GateCopy(settings)] if has_gate_store(settings) else []


def remote_gate_record(settings: Any, root: Path) -> tuple[str, dict[str, Any]] | None:
    """S3's newest gate record when it was made for ``root`` (unverified), without starting
    the sandbox; None when there is none, it is for another models dir, or the store is out of reach."""
    if not has_gate_store(settings):
        return None
    try:
        store = gate_store(settings, start=False)
        raw = store.get_bytes(GATE_LATEST)
    except (RemoteError, ConsoleError):
        return None
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("models_dir") != str(root):
        return None
    return f"{store.describe()}{GATE_LATEST}", record


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
    """`verify_gate` with the console's key and state copy, and S3's copy when the local
    record is missing; `GateFailed` (exit 4) with the reason."""
    try:
        return gate_mod.verify_gate(models, symbols=symbols, key_file=key_file(settings),
                                    state_copy=latest_state_record(store),
                                    remote_copy=lambda root: remote_gate_record(settings, root))  # fmt: skip
    except GateNotPassed as exc:
        raise GateFailed(str(exc)) from None


def alignment(settings: Any, symbols: Sequence[str] | None, models: Path,
              watch: Stopwatch | None = None) -> list[CheckResult]:
    """The alignment check; bad input is refused before any candle is fetched."""
    chosen = check_inputs(symbols, models, features_dir(settings), need_models=True)
    watch = watch or Stopwatch()
    return run_alignment(chosen, models_dir=models, features_dir=features_dir(settings),
                         builder=watch.builder(feature_builder(settings)),
                         candles=watch.candles(candle_source(settings)))  # fmt: skip


def dryrun(settings: Any, store: Any, symbols: Sequence[str] | None, models: Path, iterations: int,
           on_line: Any = None, run_id: str | None = None, step: str | None = None,
           watch: Stopwatch | None = None):
    """Alignment, dry run and the gate record, stored in the state store (and S3) too."""
    chosen = check_inputs(symbols, models, features_dir(settings), need_models=False)
    sinks = gate_sinks(settings)
    watch = watch or Stopwatch()
    outcome = run_dryrun_and_gate(
        chosen, models_dir=models, features_dir=features_dir(settings),
        builder=watch.builder(feature_builder(settings)),
        candles=watch.candles(candle_source(settings)), iterations=iterations, criteria=criteria(settings),
        key_file=key_file(settings), on_line=on_line, sinks=sinks,
    )
    store_results(store, outcome.results, run_id, step)
    store_gate(store, outcome.record)
    for sink in sinks:
        line = sink.report()
        if line:
            store.add_event(run_id, step, GATE_COPY_EVENT, line, {"where": sink.where, "error": sink.error})
            if on_line is not None:
                on_line(line)
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
        watch = Stopwatch()
        results = alignment(ctx.settings, ctx.params.symbols, models_dir(ctx.settings), watch)
        store_results(ctx.state, results, ctx.run_id, ctx.step_name)
        for r in results:
            ctx.log.info("%s", r.summary)
        details = {"results": [r.to_dict() for r in results]}
        bad = [r for r in results if not r.passed]
        if bad:
            return StepResult.failed("; ".join(r.summary for r in bad), details)
        return StepResult.ok(f"{len(results)} symbols aligned", details, aligned=[r.symbol for r in results],
                             **watch.outputs())


@register
class Dryrun(Step):
    name = "dryrun"
    Params = DryrunParams
    retryable = False

    def plan(self, ctx: StepContext) -> str:
        return (f"dry run {ctx.params.iterations} iterations for {', '.join(ctx.params.symbols)} "
                "(no orders), then record the pre-live gate")  # fmt: skip

    def run(self, ctx: StepContext) -> StepResult:
        watch = Stopwatch()
        outcome = dryrun(ctx.settings, ctx.state, ctx.params.symbols, models_dir(ctx.settings), ctx.params.iterations,
                         on_line=lambda line: ctx.log.info("%s", line), run_id=ctx.run_id, step=ctx.step_name,
                         watch=watch)  # fmt: skip
        details = {"results": [r.to_dict() for r in outcome.results], "gate": outcome.record["reasons"]}
        if not outcome.passed:
            raise GateFailed(f"gate failed: {outcome.record['reasons'][0]}",
                             hint=f"{len(outcome.record['reasons'])} reason(s); see `console gate status`")
        return StepResult.ok(f"gate passed for {', '.join(outcome.record['symbols'])}, expires in "
                             f"{ctx.settings.gate.expiry_hours:g} h", details, gate_id=outcome.record["id"],
                             **watch.outputs())  # fmt: skip

