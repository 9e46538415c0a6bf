"""Train one symbol's model on the leased GPU host: ``python -m training.train --symbol BTC-USD``.

Order of work: the guard (`training.guard.check_lease`, exit 3 when not on a leased host),
then the feature file and its hash, the purged split, the fit (resuming from
``<out>/checkpoints/<SYMBOL>/last.pt`` when it exists), test metrics with baselines and the
after-cost rule, and the model folder with its gate verdict (`training.registry`).

After every epoch, once ``last.pt`` is whole, ``last.json`` beside it records its epoch,
size and sha256 (`record_checkpoint`): what the console reads to copy a checkpoint off the
host only when it is complete and current, and to check the copy (a spot interruption
then loses at most the epoch under way).

Stdout carries one JSON object per line, for the scheduler and the console to stream::

    {"event": "start", "symbol", "rows", "features", "train", "val", "test", "device", "precision", "resumed_from"}
    {"event": "epoch", "symbol", "epoch", "epochs", "loss", "val_loss", "val_metric", "val_accuracy", "seconds"}
    {"event": "done", "symbol", "model_dir", "passed", "promoted", "reasons", "test_accuracy", "net_return"}
    {"event": "error", "symbol", "exit_code", "message"}

Exit codes: 0 done (whether or not the model passed its gates), 1 failed (worth a retry),
2 bad input (hash mismatch, too few rows, NaN, bad flags, foreign checkpoint), 3 refused by the guard.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from training import guard, registry
from training.dataset import SymbolDataset, WindowSpec, load_symbol_dataset, verify_feature_hash
from training.errors import (
    EXIT_FAILED,
    BadTrainingConfig,
    FeatureFileProblem,
    FeatureHashMismatch,
    TrainingError,
)
from training.features.io import FeatureFileError, read_feature_meta
from training.metrics import (
    TradingCosts,
    after_cost,
    classification_metrics,
    last_move_baseline,
    majority_baseline,
    pick_threshold,
)
from training.models.config import TrainConfig, read_config_file

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_RECORD = "last.json"
"""Beside ``last.pt``: ``{"epoch", "size", "sha256", "file"}`` of the checkpoint it describes."""
EXIT_INTERRUPTED = 130


def emit(event: str, **fields: Any) -> None:
    """One progress line on stdout, flushed so a tail over SSH sees it at once."""
    line = json.dumps(registry.finite_json({"event": event, **fields}), default=str, allow_nan=False)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class TrainJob:
    """Everything one symbol's training needs, resolved from flags and the config file."""

    symbol: str
    features_dir: Path
    out: Path
    config: TrainConfig
    costs: TradingCosts
    gates: registry.GateRules
    expected_hash: str | None = None
    """The hash the caller (the console) expects; None trusts the recomputation alone."""
    features_config: dict[str, Any] = field(default_factory=dict)
    """The config's ``features`` section, for recomputing the spec's hash."""
    fresh: bool = False

    @property
    def feature_file(self) -> Path:
        return self.features_dir / f"{self.symbol}.parquet"

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoints" / self.symbol / CHECKPOINT_NAME

    @property
    def window_spec(self) -> WindowSpec:
        c = self.config
        return WindowSpec(c.window, c.horizon, c.longest_feature_window, c.val_fraction, c.test_fraction)


def run_job(job: TrainJob, *, on_event: Callable[..., None] = emit) -> registry.PublishedModel:
    """Train, evaluate and publish one symbol. Assumes the guard has already passed."""
    # Imported here so `--help` and the guard's refusal never wait on torch.
    import torch

    from training.models.fit import fit, pick_device, pick_precision
    from training.models.saved import model_payload

    if job.fresh:
        shutil.rmtree(job.checkpoint.parent, ignore_errors=True)
    dataset = load_symbol_dataset(
        job.feature_file,
        job.window_spec,
        expected_hash=job.expected_hash,
        recomputed_hash=recomputed_feature_hash(job),
    )
    if dataset.symbol != job.symbol:
        raise BadTrainingConfig(f"{job.feature_file} holds features for {dataset.symbol}, not {job.symbol}")
    device = pick_device(job.config.device)
    on_event(
        "start",
        symbol=job.symbol,
        rows=len(dataset.features),
        features=dataset.input_size,
        train=len(dataset.train_ends),
        val=len(dataset.val_ends),
        test=len(dataset.test_ends),
        purge_gap=dataset.spec.purge_gap,
        device=str(device),
        precision=pick_precision(job.config.precision, device),
        resumed_from=_checkpoint_epoch(job.checkpoint),
    )
    began = time.time()

    def epoch_line(record) -> None:
        # fit() has saved this epoch's checkpoint by now; describe it before announcing the
        # epoch, so whoever acts on the line finds the record that matches.
        record_checkpoint(job.checkpoint, record.epoch)
        on_event(
            "epoch",
            symbol=job.symbol,
            epoch=record.epoch,
            epochs=job.config.epochs,
            loss=record.loss,
            val_loss=record.val_loss,
            val_metric=record.val_accuracy,
            val_accuracy=record.val_accuracy,
            seconds=round(record.seconds, 3),
        )

    result = fit(dataset, job.config, job.checkpoint, on_epoch=epoch_line)
    config, decision = decision_band(job, dataset, result)
    p_test = result.test_probabilities()
    metrics = evaluate(dataset, p_test, job.costs, config.threshold)
    metrics["decision"] = decision
    metrics["training"] = {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "device": result.device,
        "precision": result.precision,
        "seconds": round(time.time() - began, 3),
    }
    payload = model_payload(
        result.model,
        symbol=job.symbol,
        feature_names=dataset.feature_names,
        feature_hash=dataset.feature_hash,
        spec_version=dataset.spec_version,
        scaler=dataset.scaler,
        config=config.to_dict(),
        dropout=config.dropout,
    )
    published = registry.publish_model(
        job.out,
        job.symbol,
        write_model=lambda path: torch.save(payload, path),
        config={"train": config.to_dict(), "costs": vars(job.costs), "gates": vars(job.gates)},
        metrics=metrics,
        features={
            "symbol": job.symbol,
            "feature_names": list(dataset.feature_names),
            "feature_count": dataset.input_size,
            "feature_hash": dataset.feature_hash,
            "spec_version": dataset.spec_version,
            "scaler": dataset.scaler.to_dict(),
            "trained_until": _trained_until(dataset),
        },
        training_log=[vars(h) for h in result.history],
        rules=job.gates,
    )
    published = registry.promote_if_passed(job.out, published, feature_hash=dataset.feature_hash)
    # The model folder is complete; the checkpoint has done its job, and a --force rerun starts fresh.
    shutil.rmtree(job.checkpoint.parent, ignore_errors=True)
    on_event(
        "done",
        symbol=job.symbol,
        model_dir=str(published.folder),
        passed=published.passed,
        promoted=published.promoted,
        reasons=list(published.reasons),
        test_accuracy=metrics["model"]["accuracy"],
        net_return=metrics["model"]["after_cost"]["net_return"],
    )
    return published


def decision_band(job: TrainJob, dataset: SymbolDataset, result: Any) -> tuple[TrainConfig, dict[str, Any]]:
    """The config the model is saved with: its long/short band chosen on the validation part
    when ``tune_threshold`` (never on the test part, which judges it), and how it was chosen."""
    config = job.config
    if not config.tune_threshold:
        return config, {"threshold": config.threshold, "chosen_on": "config"}
    ends = dataset.val_ends
    band, val_net = pick_threshold(result.validation_probabilities(), dataset.future_return[ends],
                                   dataset.spec.horizon, job.costs, floor=config.threshold)  # fmt: skip
    return replace(config, threshold=band), {"threshold": band, "chosen_on": "validation",
                                             "validation_net_return": val_net}


def evaluate(dataset: SymbolDataset, p_test: np.ndarray, costs: TradingCosts, threshold: float) -> dict[str, Any]:
    """Test-part metrics for the model and both baselines, each with the after-cost rule."""
    ends, horizon = dataset.test_ends, dataset.spec.horizon
    y = dataset.labels[ends].astype(np.float64)
    r = dataset.future_return[ends]
    train_y = dataset.labels[dataset.train_ends]
    scored = {
        "model": p_test,
        "majority": majority_baseline(train_y, len(ends)),
        "last_move": last_move_baseline(dataset.close, ends, horizon, dataset.train_ends, train_y),
    }
    out: dict[str, Any] = {"baselines": {}}
    for name, p in scored.items():
        block = {**classification_metrics(y, p), "after_cost": after_cost(p, r, horizon, costs, threshold)}
        if name == "model":
            out["model"] = block
        else:
            out["baselines"][name] = block
    out["split"] = {
        "train": len(dataset.train_ends),
        "val": len(dataset.val_ends),
        "test": len(ends),
        "purge_gap": dataset.spec.purge_gap,
    }
    return out


def recomputed_feature_hash(job: TrainJob) -> str | None:
    """The hash this code's own feature spec gives the job's feature file, recomputed here.

    A file that claims the spec version this code ships must carry exactly that spec's
    hash. A file from another spec version is accepted only when the caller vouches for
    its hash with ``--expected-feature-hash``; otherwise it is refused (rebuild features).
    Returns None when there is nothing to recompute (no spec shipped, or a vouched file).
    """
    try:
        meta = read_feature_meta(job.feature_file)
    except FeatureFileError as exc:
        raise FeatureFileProblem(str(exc)) from exc
    # The caller's expectation first: its mismatch is the more useful message.
    verify_feature_hash(job.feature_file, meta.feature_hash, expected_hash=job.expected_hash)
    try:
        from training.features import spec as feature_spec
    except ImportError:
        return None
    code_version = str(getattr(feature_spec, "SPEC_VERSION", ""))
    if meta.spec_version != code_version:
        if job.expected_hash is not None and job.expected_hash == meta.feature_hash:
            return None
        raise FeatureHashMismatch(
            f"{job.feature_file} was built with feature spec version {meta.spec_version!r} but this code "
            f"ships {code_version!r}; rebuild features (console features build)"
        )
    try:
        config = feature_spec.FeatureConfig.from_mapping(job.features_config)
        return feature_spec.spec_for(job.symbol, config).hash
    except ValueError as exc:
        raise BadTrainingConfig(f"bad features section in the training config ({exc})") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description="Train one symbol's direction model.")
    p.add_argument("--symbol", required=True, help="pair like BTC-USD")
    p.add_argument("--features-dir", type=Path, default=Path("FEATURES"), help="folder of <SYMBOL>.parquet")
    p.add_argument("--out", type=Path, default=Path("artifacts"), help="artifact root (models/, champions/, checkpoints/)")
    p.add_argument("--config", type=Path, help="JSON config with train / costs / gates sections")
    p.add_argument("--lease", type=Path, help="lease file (default $RC_LEASE_FILE or ./.rc-lease.json)")
    p.add_argument("--expected-feature-hash", help="refuse a feature file with another hash")
    p.add_argument("--fresh", action="store_true", help="discard this symbol's checkpoint and start over")
    for name, kind in (
        ("epochs", int), ("window", int), ("horizon", int), ("longest-feature-window", int),
        ("batch-size", int), ("hidden-size", int), ("num-layers", int), ("learning-rate", float),
        ("patience", int), ("seed", int), ("threshold", float),
    ):  # fmt: skip
        p.add_argument(f"--{name}", type=kind)
    p.add_argument("--device", choices=("auto", "cuda", "cpu"))
    p.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"))
    return p


def job_from_args(args: argparse.Namespace) -> TrainJob:
    """Flags over config file over defaults."""
    symbol = registry.check_symbol(args.symbol)
    cfg = read_config_file(args.config)
    overrides = {k: getattr(args, k) for k in (
        "epochs", "window", "horizon", "longest_feature_window", "batch_size", "hidden_size",
        "num_layers", "learning_rate", "patience", "seed", "threshold", "device", "precision",
    )}  # fmt: skip
    config = TrainConfig().with_overrides(cfg["train"]).with_overrides(overrides)
    try:
        costs = TradingCosts.for_symbol(cfg["costs"], symbol)
    except (TypeError, ValueError) as exc:
        raise BadTrainingConfig(f"bad costs for {symbol} in the config ({exc})") from None
    return TrainJob(
        symbol=symbol,
        features_dir=args.features_dir,
        out=args.out,
        config=config,
        costs=costs,
        gates=registry.GateRules.from_config(cfg["gates"]),
        expected_hash=args.expected_feature_hash,
        features_config=cfg["features"],
        fresh=args.fresh,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    symbol = args.symbol
    try:
        # The guard goes first, before reading any data or flags' files: no flag bypasses it.
        guard.check_lease(args.lease)
        run_job(job_from_args(args))
    except TrainingError as exc:
        emit("error", symbol=symbol, exit_code=exc.exit_code, message=str(exc))
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        emit("error", symbol=symbol, exit_code=EXIT_INTERRUPTED, message="interrupted; rerun to resume from the last epoch")
        return EXIT_INTERRUPTED
    except Exception as exc:  # CUDA OOM, a full disk...: a failure worth a retry, said in one line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        message = f"training {symbol} failed: {type(exc).__name__}: {first} (rerun resumes from the last epoch)"
        emit("error", symbol=symbol, exit_code=EXIT_FAILED, message=message)
        traceback.print_exc(file=sys.stderr)
        return EXIT_FAILED
    return 0


def record_checkpoint(checkpoint: Path, epoch: int) -> dict[str, Any]:
    """Write ``last.json`` beside ``checkpoint`` (atomically): its epoch, size and sha256."""
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    record = {"file": checkpoint.name, "epoch": int(epoch), "size": checkpoint.stat().st_size,
              "sha256": digest.hexdigest()}
    registry.write_json_atomic(checkpoint.with_name(CHECKPOINT_RECORD), record)
    return record


def _checkpoint_epoch(path: Path) -> int:
    if not path.exists():
        return 0
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except Exception:  # fit() reports an unreadable checkpoint properly; here it is only a label
        return 0


def _trained_until(dataset) -> str | None:
    """The newest bar that influenced the model: the last validation window's label bar.

    Training and early stopping saw nothing later; the dry run judges the model only on
    bars after this (the test part and anything newer), so its hit rate is out of sample.
    """
    if not len(dataset.timestamps) or not len(dataset.val_ends):
        return None
    row = min(int(dataset.val_ends.max()) + dataset.spec.horizon, len(dataset.timestamps) - 1)
    import pandas as pd

    return pd.Timestamp(dataset.timestamps[row]).tz_localize(None).isoformat() + "Z"



if __name__ == "__main__":
    sys.exit(main())
