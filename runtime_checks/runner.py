"""Run the checks for a set of symbols and hand the results to the gate.

`run_alignment` is ``console check alignment``; `run_dryrun_and_gate` is ``console dryrun``
and the checklist's ``dryrun`` step: alignment, then the dry run where alignment holds,
then a gate record (pass or fail) for exactly the files checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from runtime_checks import gate, models
from runtime_checks.alignment import ALIGNMENT_BARS, DEFAULT_FETCH_BARS, check_symbol_alignment
from runtime_checks.checks import ALIGNMENT, CheckResult
from runtime_checks.dryrun import dryrun_symbol
from runtime_checks.errors import CheckInputError
from runtime_checks.inputs import CandleSource, FeatureBuilder


def pick_symbols(models_dir: Path, symbols: Sequence[str] | None) -> list[str]:
    """The symbols asked for, else every symbol with a model; refuses an empty models dir."""
    if symbols:
        return [models.check_symbol(s) for s in symbols]
    found = models.symbols_in(models_dir)
    if not found:
        raise CheckInputError(f"no trained models in {models.models_root(models_dir)} (expected models/<SYMBOL>/<timestamp>/model.pt); "
                              "download them first, or name --symbols to dry run the baseline")  # fmt: skip
    return found


def run_alignment(
    symbols: Sequence[str] | None,
    *,
    models_dir: Path,
    features_dir: Path,
    builder: FeatureBuilder,
    candles: CandleSource,
    fetch_bars: int = ALIGNMENT_BARS,
) -> list[CheckResult]:
    """Three-way alignment per symbol; bad input (no model, a torn checkpoint, stale candles) raises."""
    return [check_symbol_alignment(s, models_dir=models_dir, features_dir=features_dir, builder=builder,
                                   candles=candles, fetch_bars=fetch_bars)
            for s in pick_symbols(models_dir, symbols)]  # fmt: skip


@dataclass(frozen=True)
class DryrunOutcome:
    """Everything a dry run produced: the results, the printed lines and the gate record."""

    results: tuple[CheckResult, ...]
    lines: tuple[str, ...]
    record: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.record["passed"])


def run_dryrun_and_gate(
    symbols: Sequence[str] | None,
    *,
    models_dir: Path,
    features_dir: Path,
    builder: FeatureBuilder,
    candles: CandleSource,
    iterations: int = 5,
    criteria: gate.GateCriteria = gate.GateCriteria(),
    key_file: Path | None = None,
    fetch_bars: int = DEFAULT_FETCH_BARS,
    on_line: Callable[[str], None] | None = None,
    sinks: Sequence[Callable[[str, bytes], None]] = (),
) -> DryrunOutcome:
    """Alignment, the dry run, and a signed gate record next to the models (pass or fail)."""
    chosen = pick_symbols(models_dir, symbols)
    results: list[CheckResult] = []
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if on_line is not None:
            on_line(line)

    for symbol in chosen:
        if models.model_folder(models_dir, symbol) is None:
            results.append(ALIGNMENT.result(symbol, False, f"{symbol}: no trained model, nothing to align"))
        else:
            results.append(check_symbol_alignment(symbol, models_dir=models_dir, features_dir=features_dir,
                                                  builder=builder, candles=candles,
                                                  fetch_bars=min(fetch_bars, ALIGNMENT_BARS)))  # fmt: skip
            if not results[-1].passed:
                say(results[-1].summary)
                continue  # a misaligned model would predict from the wrong columns: no dry run
        run = dryrun_symbol(symbol, models_dir=models_dir, features_dir=features_dir, builder=builder, candles=candles,
                            iterations=iterations, fetch_bars=fetch_bars, criteria=criteria, on_line=say)  # fmt: skip
        results.append(run.result)
    hashes = {s: builder.spec(s).hash for s in chosen}
    record = gate.record_gate(models_dir, results, symbols=chosen, feature_hashes=hashes, criteria=criteria,
                              key_file=key_file, sinks=sinks)  # fmt: skip
    return DryrunOutcome(tuple(results), tuple(lines), record)
