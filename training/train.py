"""Train one unit's model on the leased GPU host: ``python -m training.train --symbol BTC-USD``.

Order of work: the guard (`training.guard.check_lease`, exit 3 when not on a leased host),
then the job through its family (``--family``, default ``lstm``; `training.families`) and
the shared driver (`training.families.run.train_unit`): the fit (resuming from
``<out>/checkpoints/<SYMBOL>/``), the evaluation on the test part against its baselines,
after costs, with significance figures, the family's rules, and the model folder
``<out>/models/<SYMBOL>/<stamp>/``, promoted to champion only when the rules pass.

After every epoch, once the checkpoint is whole, ``last.json`` beside it records its
epoch, size and sha256: what the console reads to copy a checkpoint off the host only
when it is complete and current, and to check the copy (a spot interruption then loses at
most the epoch under way).

Stdout carries one JSON object per line, for the scheduler and the console to stream::

    {"event": "start", "symbol", "rows", "features", "train", "val", "test", "device", "precision", "cuda_graph", "resumed_from"}
    {"event": "epoch", "symbol", "epoch", "epochs", "loss", "val_loss", "val_metric", "val_accuracy", "seconds"}
    {"event": "done", "symbol", "model_dir", "passed", "promoted", "reasons", "test_accuracy", "net_return"}
    {"event": "error", "symbol", "exit_code", "message"}

Exit codes: 0 done (whether or not the model passed its gates), 1 failed (worth a retry),
2 bad input (hash mismatch, too few rows, NaN, bad flags, foreign checkpoint), 3 refused by the guard.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from training import guard, registry
from training.errors import EXIT_FAILED, BadTrainingConfig, TrainingError
from training.families import get_family
from training.families.base import FitJob, Progress
from training.families.evaluation import DEFAULT_ALPHA
from training.families.lstm import CHECKPOINT_NAME, CHECKPOINT_RECORD
from training.families.lstm.config import CUDA_GRAPH_CHOICES, TrainConfig, read_config_file
from training.families.lstm.params import LstmParams
from training.families.run import train_unit
from training.metrics import TradingCosts

EXIT_INTERRUPTED = 130
__all__ = ["CHECKPOINT_NAME", "CHECKPOINT_RECORD", "TrainJob", "emit", "main", "run_job"]


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
    alpha: float = DEFAULT_ALPHA
    """Significance level of the rules' paired comparisons."""
    family: str = "lstm"
    params: dict[str, Any] | None = None
    """The family's params as given (the config file's sections), for families other than ``lstm``
    whose settings are not `TrainConfig`'s; None builds the lstm's from the fields above."""
    checkpoint_root: Path | None = None
    """Where checkpoints live, one folder per symbol (default ``<out>/checkpoints``); the
    container keeps them in ``/opt/ml/checkpoints``, which the service copies off the machine."""

    @property
    def feature_file(self) -> Path:
        return self.features_dir / f"{self.symbol}.parquet"

    @property
    def work_dir(self) -> Path:
        """Where the family keeps its checkpoints for this symbol (a rerun resumes from them)."""
        return (self.checkpoint_root or self.out / "checkpoints") / self.symbol

    @property
    def checkpoint(self) -> Path:
        return self.work_dir / CHECKPOINT_NAME

    def fit_job(self) -> FitJob:
        """The job as the family sees it (`training.families.base.FitJob`)."""
        params = (
            self.params
            if self.params is not None
            else {
                "train": self.config.to_dict(),
                "gates": {**asdict(self.gates), "alpha": self.alpha},
                "features": dict(self.features_config),
                "expected_feature_hash": self.expected_hash,
                "fresh": self.fresh,
            }
        )
        return FitJob(
            self.family,
            self.symbol,
            {"features": self.feature_file},
            self.work_dir,
            params=params,
            costs={"default": asdict(self.costs)},
        )


def run_job(job: TrainJob, *, on_event: Callable[..., None] = emit) -> registry.PublishedModel:
    """Train, judge and publish one symbol through its family. Assumes the guard has already passed."""
    from training.features.io import FeatureFileError, read_feature_meta

    def progress(p: Progress) -> None:
        if p.kind == "start":
            on_event("start", symbol=p.unit, **{k: int(v) for k, v in p.metrics.items()}, **p.notes)
        else:
            on_event(p.kind, symbol=p.unit, epoch=p.step, epochs=p.steps, **p.metrics)

    try:
        pin = read_feature_meta(job.feature_file).feature_hash
    except FeatureFileError:
        pin = ""  # the fit refuses the file with the reason; nothing is published
    outcome = train_unit(job.fit_job(), job.out, on_progress=progress, pin=pin)
    published = outcome.published
    # The model folder is complete; the checkpoint has done its job, and a --force rerun starts fresh.
    shutil.rmtree(job.work_dir, ignore_errors=True)
    evaluation = outcome.evaluation
    on_event(
        "done",
        symbol=job.symbol,
        model_dir=str(published.folder),
        passed=published.passed,
        promoted=published.promoted,
        reasons=list(published.reasons),
        test_accuracy=evaluation.metrics.get("accuracy"),
        net_return=evaluation.after_cost.net_return if evaluation.after_cost else None,
    )
    return published


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description="Train one symbol's model.")
    p.add_argument("--symbol", required=True, help="pair like BTC-USD")
    p.add_argument("--family", default="lstm", help="the model family (training.families; default lstm)")
    p.add_argument("--features-dir", type=Path, default=Path("FEATURES"), help="folder of <SYMBOL>.parquet")
    p.add_argument(
        "--out", type=Path, default=Path("artifacts"), help="artifact root (models/, champions/, checkpoints/)"
    )
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
    p.add_argument("--cuda-graph", choices=CUDA_GRAPH_CHOICES, help="record the train step as a CUDA graph (auto)")
    return p


def job_from_args(args: argparse.Namespace) -> TrainJob:
    """Flags over config file over defaults."""
    symbol = registry.check_symbol(args.symbol)
    cfg = read_config_file(args.config)
    overrides = {k: getattr(args, k) for k in (
        "epochs", "window", "horizon", "longest_feature_window", "batch_size", "hidden_size",
        "num_layers", "learning_rate", "patience", "seed", "threshold", "device", "precision", "cuda_graph",
    )}  # fmt: skip
    family = get_family(args.family)
    try:
        costs = TradingCosts.for_symbol(cfg["costs"], symbol)
    except (TypeError, ValueError) as exc:
        raise BadTrainingConfig(f"bad costs for {symbol} in the config ({exc})") from None
    if family.name != "lstm":
        train = {**cfg["train"], **{k: v for k, v in overrides.items() if v is not None}}
        params = {
            "train": train,
            "gates": cfg["gates"],
            "features": cfg["features"],
            "expected_feature_hash": args.expected_feature_hash,
            "fresh": args.fresh,
        }
        family.check_params(params)  # bad input before anything loads
        return TrainJob(
            symbol,
            args.features_dir,
            args.out,
            TrainConfig(),
            costs,
            registry.GateRules(),
            family=family.name,
            params=params,
        )
    config = TrainConfig().with_overrides(cfg["train"]).with_overrides(overrides)
    lstm = LstmParams.from_mapping({"gates": dict(cfg["gates"])})  # bad gates are bad input before anything loads
    return TrainJob(
        symbol=symbol,
        features_dir=args.features_dir,
        out=args.out,
        config=config,
        costs=costs,
        gates=lstm.gates,
        alpha=lstm.alpha,
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
        emit(
            "error",
            symbol=symbol,
            exit_code=EXIT_INTERRUPTED,
            message="interrupted; rerun to resume from the last epoch",
        )
        return EXIT_INTERRUPTED
    except Exception as exc:  # CUDA OOM, a full disk...: a failure worth a retry, said in one line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        message = f"training {symbol} failed: {type(exc).__name__}: {first} (rerun resumes from the last epoch)"
        emit("error", symbol=symbol, exit_code=EXIT_FAILED, message=message)
        traceback.print_exc(file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
