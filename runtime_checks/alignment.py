"""Three-way feature alignment: the training feature file, the runtime builder on freshly
fetched candles, and the model checkpoint must name the same features, in the same order,
with the same count and the same feature hash -- and the runtime builder's values must
match the training file's for the same timestamps (`runtime_checks.skew`).

On a mismatch the result shows the counts side by side and, for each source, the names
that are missing, extra or moved compared with the training feature file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from runtime_checks import models
from runtime_checks.checks import ALIGNMENT, CheckResult
from runtime_checks.errors import CheckInputError
from runtime_checks.inputs import CandleSource, FeatureBuilder, fresh_candles, granularity_of
from runtime_checks.skew import skew_problem, value_skew

NOT_FEATURES = ("timestamp", "open", "high", "low", "close", "volume", "session", "volatility_regime")
DEFAULT_FETCH_BARS = 11_500
"""One-minute candles the dry run fetches: the live path's settling (twice the slowest
feature's look-back, the 1h MACD's 36 hours: 4,320 bars; `runtime_checks.inputs`) plus
about five days to judge on -- some 480 non-overlapping samples at a 15-minute horizon."""
ALIGNMENT_BARS = 5_000
"""Candles the alignment check fetches: enough for the live path to settle (twice the
slowest look-back: 4,320 one-minute bars for the 1h MACD) and leave rows to compare with
the training file on values (`runtime_checks.skew`)."""


@dataclass(frozen=True)
class TrainingFile:
    """The training feature file's contract and the bits of its data the checks need."""

    path: Path
    names: tuple[str, ...]
    hash: str
    granularity: int
    """Seconds per bar."""
    last_timestamp: pd.Timestamp
    """The newest bar training could have seen: anything later is out of sample."""
    close: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty(0))

    def up_share(self, horizon: int) -> float:
        """Share of ``horizon``-bar moves up in training (the majority baseline's view of the world)."""
        h = max(1, int(horizon))
        return float(np.mean(self.close[h:] > self.close[:-h])) if len(self.close) > h else 0.5


def read_training_file(features_dir: Path, symbol: str) -> TrainingFile:
    """``<features_dir>/<SYMBOL>.parquet``'s names, hash and time range; refuses a file for another symbol."""
    from training.features.io import FeatureFileError, read_feature_columns

    path = Path(features_dir) / f"{models.check_symbol(symbol)}.parquet"
    try:
        table, meta = read_feature_columns(path, ["timestamp", "close"])
    except FeatureFileError as exc:
        raise CheckInputError(str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        raise CheckInputError(f"{path} is not a readable feature file ({type(exc).__name__}); rebuild it") from None
    if meta.symbol != symbol:
        raise CheckInputError(f"{path} holds features for {meta.symbol}, not {symbol}; rebuild it")
    return TrainingFile(path, meta.feature_names, meta.feature_hash, granularity_of(table["timestamp"]),
                        pd.Timestamp(table["timestamp"].iloc[-1]), table["close"].to_numpy(dtype=np.float64))  # fmt: skip


def feature_columns(frame: pd.DataFrame) -> tuple[str, ...]:
    """The feature columns of a built frame, in order (timestamp, OHLCV, categoricals are not features)."""
    return tuple(str(c) for c in frame.columns if c not in NOT_FEATURES)


def list_difference(reference: Sequence[str], other: Sequence[str]) -> dict[str, list]:
    """Names ``other`` lacks, has extra, and has at another position than ``reference``."""
    ref_pos = {n: i for i, n in enumerate(reference)}
    other_pos = {n: i for i, n in enumerate(other)}
    return {
        "missing": [n for n in reference if n not in other_pos],
        "extra": [n for n in other if n not in ref_pos],
        "moved": [{"name": n, "from": ref_pos[n], "to": other_pos[n]}
                  for n in reference if n in other_pos and other_pos[n] != ref_pos[n]],
    }  # fmt: skip


def compare(
    symbol: str,
    training: tuple[Sequence[str], str],
    runtime: tuple[Sequence[str], str],
    model: tuple[Sequence[str], str, int],
) -> CheckResult:
    """The alignment verdict for one symbol from the three sources' (names, hash[, input_size])."""
    file_names, file_hash = tuple(training[0]), training[1]
    run_names, run_hash = tuple(runtime[0]), runtime[1]
    model_names, model_hash, input_size = tuple(model[0]), model[1], int(model[2])
    counts = {"training_file": len(file_names), "runtime": len(run_names), "model": len(model_names),
              "model_input_size": input_size}  # fmt: skip
    hashes = {"training_file": file_hash, "runtime": run_hash, "model": model_hash}
    differences = {"runtime": list_difference(file_names, run_names), "model": list_difference(file_names, model_names)}
    problems: list[str] = []
    if len(set(counts.values())) != 1:
        problems.append("counts " + " / ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    for source, diff in differences.items():
        for kind in ("missing", "extra"):
            if diff[kind]:
                problems.append(f"{source} {kind}: {_names(diff[kind])}")
        if diff["moved"]:
            moved = [f"{m['name']} ({m['from']}->{m['to']})" for m in diff["moved"]]
            problems.append(f"{source} moved: {_names(moved)}")
    if len(set(hashes.values())) != 1:
        problems.append("feature hash " + " / ".join(f"{k.replace('_', ' ')} {_short(v)}" for k, v in hashes.items()))
    figures = {"feature_count": len(file_names), **{f"count_{k}": v for k, v in counts.items()},
               "aligned": not problems}  # fmt: skip
    details = {
        "counts": counts,
        "hashes": hashes,
        "differences": differences,
        "problems": problems,
        "names": {"training_file": list(file_names), "runtime": list(run_names), "model": list(model_names)},
    }
    if problems:
        return ALIGNMENT.result(symbol, False, f"{symbol}: misaligned: " + "; ".join(problems), figures, details)
    summary = f"{symbol}: aligned, {len(file_names)} features in the same order, feature hash {_short(file_hash)}"
    return ALIGNMENT.result(symbol, True, summary, figures, details)


def check_symbol_alignment(
    symbol: str,
    *,
    models_dir: Path,
    features_dir: Path,
    builder: FeatureBuilder,
    candles: CandleSource,
    fetch_bars: int = ALIGNMENT_BARS,
) -> CheckResult:
    """Fetch fresh candles, build runtime features, read the file and checkpoint, and compare."""
    models.check_symbol(symbol)
    training = read_training_file(features_dir, symbol)
    folder = models.model_folder(models_dir, symbol)
    if folder is None:
        raise CheckInputError(f"no trained model for {symbol} in {models.models_root(models_dir)}; "
                              "download the models (or train one) first")  # fmt: skip
    models.require_complete(folder)
    info, _ = models.read_checkpoint(folder / "model.pt")
    if info.symbol != symbol:
        raise CheckInputError(
            f"{folder / 'model.pt'} was trained on {info.symbol}, not {symbol}; download the right model"
        )
    raw = candles.latest(symbol, training.granularity, fetch_bars)
    frame = fresh_candles(raw, symbol=symbol, granularity=training.granularity, now=candles.now())
    built = builder.build(symbol, frame)
    result = compare(symbol, (training.names, training.hash), (feature_columns(built), builder.spec(symbol).hash),
                     (info.feature_names, info.feature_hash, info.input_size))  # fmt: skip
    if not result.passed:
        return result
    return with_value_skew(result, value_skew(built, training.path, training.names))


def with_value_skew(result: CheckResult, skew: dict) -> CheckResult:
    """The names-and-hashes verdict extended by the values (`runtime_checks.skew`)."""
    problem = skew_problem(skew)
    figures = {**result.figures, "value_rows_compared": skew["compared_rows"], "value_rows_skewed": skew["skewed_rows"],
               "value_worst_sd": skew.get("worst_sd"), "aligned": result.passed and problem is None}  # fmt: skip
    details = {**result.details, "value_skew": skew}
    if problem is not None:
        details["problems"] = [*details.get("problems", []), problem]
        return ALIGNMENT.result(result.symbol, False, f"{result.symbol}: misaligned: {problem}", figures, details)
    if skew["compared_rows"]:
        note = (f"; values agree within {skew['tolerance_sd']:g} sd on {skew['compared_rows']} rows "
                f"({skew['first']}..{skew['last']}, worst {skew['worst_sd']:.2g} sd)")  # fmt: skip
    else:
        note = "; values not compared (no recent row in common with the training file: rebuild features to compare)"
    return ALIGNMENT.result(result.symbol, True, result.summary + note, figures, details)


def _names(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _short(digest: str) -> str:
    return digest[:19] if digest.startswith("sha256:") else digest[:12]
