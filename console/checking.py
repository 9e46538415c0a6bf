"""The runtime checks as the console runs them: the work of the ``alignment`` and ``dryrun``
steps, shared with ``console check``, ``console dryrun`` and ``console gate``: where fresh
candles come from, and how results and gate records reach the state store and S3.

Paths come from `console.resources.Paths`: models in ``<data_root>/models`` (the artifact
root the download step fills), feature files in ``<data_root>/features``, the gate key
``<state_dir>/gate.key``.

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
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from console.errors import ConsoleError, GateFailed
from console.resources import Resources
from console.state import StateStore
from console.stopwatch import Stopwatch
from remote.errors import RemoteError
from runtime_checks import gate as gate_mod
from runtime_checks import models as model_files
from runtime_checks.alignment import read_training_file
from runtime_checks.checks import CheckResult
from runtime_checks.errors import CheckInputError, GateNotPassed
from runtime_checks.inputs import CoinbaseCandles, CoinGeckoFundamentals, SpecFeatureBuilder
from runtime_checks.runner import DryrunOutcome, pick_symbols, run_alignment, run_dryrun_and_gate
from training.features.files import features_folder

RESULT_EVENT = "check.result"


def models_dir(resources: Resources, override: str | Path | None = None) -> Path:
    return Path(override).expanduser() if override else resources.paths.models


class MarketCandles:
    """Fresh candles from the configured exchange (the sandbox's market simulator on the
    sandbox profile), resolved on first use: building one never starts the sandbox."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    @cached_property
    def _source(self) -> CoinbaseCandles:
        return CoinbaseCandles(self.resources.market_urls().coinbase)

    def now(self) -> float:
        return time.time()

    def latest(self, symbol: str, granularity: int, bars: int) -> pd.DataFrame:
        return self._source.latest(symbol, granularity, bars)


class MarketFundamentals:
    """CoinGecko fundamentals from the same place `fetch` uses, resolved on first use."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    @cached_property
    def _source(self) -> CoinGeckoFundamentals:
        return CoinGeckoFundamentals(self.resources.coingecko_key(), self.resources.market_urls().coingecko)

    def __call__(self, symbol: str, start: int, end: int) -> pd.DataFrame:
        return self._source(symbol, start, end)


def feature_builder(resources: Resources, timeframes: Mapping[str, str] | None = None) -> SpecFeatureBuilder:
    """The shared feature builder, with CoinGecko fundamentals from the same place `fetch` uses,
    building each symbol on the candles its model was trained on (``timeframes``, 1m if absent)."""
    return SpecFeatureBuilder(MarketFundamentals(resources), timeframes)


def model_timeframes(resources: Resources, symbols: Sequence[str] | None, models: Path) -> tuple[Path, dict[str, str]]:
    """The training features folder and the timeframe of each symbol's model: a model trained
    on hourly candles is judged on hourly candles, against the hourly training file. One
    timeframe per check (the training files of each live in their own folder)."""
    chosen = pick_symbols(models, symbols)
    found = {s: model_files.model_timeframe(models, s) for s in chosen}
    kinds = sorted(set(found.values()))
    if len(kinds) > 1:
        raise CheckInputError("the models were trained on different timeframes ("
                              + ", ".join(f"{s} {tf}" for s, tf in found.items())
                              + "); check one timeframe at a time with --symbols")  # fmt: skip
    timeframe = kinds[0] if kinds else "1m"
    return features_folder(resources.paths.features, timeframe), {s: tf for s, tf in found.items() if tf != "1m"}


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

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.where: str | None = None
        self.error: str | None = None

    def __call__(self, name: str, body: bytes) -> None:
        try:
            key = gate_key(json.loads(body))
            # The dry run has started the sandbox already (its market lives there) unless
            # the market was pointed elsewhere; a copy is not worth starting it for.
            store = self.resources.artifact_store(start_sandbox=False)
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


def gate_sinks(resources: Resources) -> list[GateCopy]:
    """Where a gate record goes besides the models dir and the state store: the run's
    artifact store when the profile has one. Each sink is called with ``("gate.json", body)``."""
    return [GateCopy(resources)] if resources.has_artifact_store else []


def remote_gate_record(resources: Resources, root: Path) -> tuple[str, dict[str, Any]] | None:
    """S3's newest gate record when it was made for ``root`` (unverified), without starting
    the sandbox; None when there is none, it is for another models dir, or the store is out of reach."""
    if not resources.has_artifact_store:
        return None
    try:
        store = resources.artifact_store(start_sandbox=False)
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


def criteria(resources: Resources) -> gate_mod.GateCriteria:
    return gate_mod.GateCriteria.from_settings(resources.settings.gate)


def store_results(
    store: StateStore, results: Iterable[CheckResult], run_id: str | None = None, step: str | None = None
) -> None:
    """Each result as an event (``check.result``): what `console check` and the TUI show."""
    for r in results:
        store.add_event(run_id, step, RESULT_EVENT, r.summary, r.to_dict())


def store_gate(store: StateStore, record: dict[str, Any]) -> None:
    store.add_gate(passed=bool(record["passed"]), expires_at=float(record["expires_at"]),
                   feature_hash=record["feature_hash"], model_hashes=record["model_hashes"], record=record)  # fmt: skip


def latest_state_record(store: StateStore) -> dict[str, Any] | None:
    row = store.latest_gate()
    return json.loads(row["record"]) if row is not None else None


def latest_results(store: StateStore) -> list[CheckResult]:
    """The newest stored result per (check, symbol)."""
    newest: dict[tuple[str, str], CheckResult] = {}
    for event in store.events():
        if event.kind == RESULT_EVENT:
            r = CheckResult.from_dict(event.data)
            newest[(r.check, r.symbol)] = r
    return sorted(newest.values(), key=lambda r: (r.symbol, r.check))


def verify(
    resources: Resources, store: StateStore, models: Path, symbols: Sequence[str] | None = None
) -> dict[str, Any]:
    """`verify_gate` with the console's key and state copy, and S3's copy when the local
    record is missing; `GateFailed` (exit 4) with the reason."""
    try:
        return gate_mod.verify_gate(models, symbols=symbols, key_file=resources.paths.gate_key,
                                    state_copy=latest_state_record(store),
                                    remote_copy=lambda root: remote_gate_record(resources, root))  # fmt: skip
    except GateNotPassed as exc:
        raise GateFailed(str(exc)) from None


def alignment(
    resources: Resources, symbols: Sequence[str] | None, models: Path, watch: Stopwatch | None = None
) -> list[CheckResult]:
    """The alignment check; bad input is refused before any candle is fetched."""
    features, timeframes = model_timeframes(resources, symbols, models)
    chosen = check_inputs(symbols, models, features, need_models=True)
    watch = watch or Stopwatch()
    return run_alignment(chosen, models_dir=models, features_dir=features,
                         builder=watch.builder(feature_builder(resources, timeframes)),
                         candles=watch.candles(MarketCandles(resources)))  # fmt: skip


def dryrun(
    resources: Resources,
    store: StateStore,
    symbols: Sequence[str] | None,
    models: Path,
    iterations: int,
    on_line: Callable[[str], None] | None = None,
    run_id: str | None = None,
    step: str | None = None,
    watch: Stopwatch | None = None,
) -> DryrunOutcome:
    """Alignment, dry run and the gate record, stored in the state store (and S3) too."""
    features, timeframes = model_timeframes(resources, symbols, models)
    chosen = check_inputs(symbols, models, features, need_models=False)
    sinks = gate_sinks(resources)
    watch = watch or Stopwatch()
    outcome = run_dryrun_and_gate(
        chosen,
        models_dir=models,
        features_dir=features,
        builder=watch.builder(feature_builder(resources, timeframes)),
        candles=watch.candles(MarketCandles(resources)),
        iterations=iterations,
        criteria=criteria(resources),
        key_file=resources.paths.gate_key,
        on_line=on_line,
        sinks=sinks,
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
