"""The ``lstm`` family: a per-coin LSTM calling the direction ``horizon`` bars ahead.

The model reads a window of the symbol's scaled features (`training.features`; the input
size is the feature count of the data, never a constant) and gives P(up). It is trained
with early stopping on the validation part, resuming from the checkpoint in
``FitJob.work_dir`` (``last.pt`` plus ``last.json``: epoch, size, sha256 -- what the console
copies off the host each epoch), and judged on the test part (`judge`).

Modules: `network` (the torch module), `config` (hyper-parameters), `params` (a job's
``params``), `fit` (the epoch loop, on the device), `judge` (the evaluation and the
rules), `saved` (``model.pt``, loaded with ``weights_only=True``: a tampered file is
refused, never run), `baseline` (the fallback), `synthetic` (feature files for tests).

A saved model folder holds ``model.pt``, ``config.json`` (train, costs, gates), ``metrics.json``
(test figures of the model and both baselines), ``features.json`` (the feature contract and
``trained_until``) and ``training_log.json``; `training.families.run.train_unit` adds
``evaluation.json``, ``verdict.json`` and ``sha256.txt``.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from training import registry
from training.errors import BadTrainingConfig, MissingFeatureInput
from training.families.artifacts import save_json
from training.families.base import FitJob, InputNeed, Predictor, Progress, ProgressSink
from training.families.evaluation import Evaluation, GateRule
from training.families.lstm.baseline import LastMovePredictor
from training.families.lstm.params import LstmParams, recomputed_feature_hash, spec_lookback
from training.metrics import TradingCosts

if TYPE_CHECKING:  # pragma: no cover
    from training.dataset import SymbolDataset
    from training.families.lstm.config import TrainConfig
    from training.families.lstm.fit import FitResult
    from training.families.lstm.saved import LoadedModel

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_RECORD = "last.json"
"""Beside ``last.pt``: ``{"epoch", "size", "sha256", "file"}`` of the checkpoint it describes."""
MODEL_FILES = ("model.pt", "config.json", "metrics.json", "features.json", "training_log.json")


@dataclass
class FittedLstm:
    """A fitted model and everything judging and saving it needs."""

    unit: str
    dataset: "SymbolDataset"
    result: "FitResult"
    config: "TrainConfig"
    """The config it is saved with (its long/short band chosen on the validation part)."""
    decision: dict[str, Any]
    costs: TradingCosts
    params: LstmParams
    seconds: float

    def test_probabilities(self) -> Any:
        return self.result.test_probabilities()


class LstmFamily:
    """The per-coin LSTM direction model (`training.families.base.ModelFamily`)."""

    name: ClassVar[str] = "lstm"
    artifact_format: ClassVar[str] = "retrain-console/direction-lstm/1"

    def inputs(self, params: Mapping[str, Any]) -> tuple[InputNeed, ...]:
        return (InputNeed("features", "the symbol's feature file (training.features; `console features build`)"),)

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return LstmParams.from_mapping(params).to_dict()

    # --- fit ------------------------------------------------------------------------------

    def fit(self, job: FitJob, on_progress: ProgressSink) -> FittedLstm:
        """Train with early stopping, resuming from ``job.work_dir`` when it holds a checkpoint."""
        from training.dataset import load_symbol_dataset
        from training.evidence import MIN_TRADES
        from training.families.lstm.fit import fit, pick_device, pick_precision
        from training.families.lstm.graphed import graph_wanted
        from training.families.lstm.judge import decision_band
        from training.families.lstm.recenter import logit_shift, shift_output

        params = LstmParams.from_mapping(job.params)
        config = params.config if job.device == "auto" else params.config.with_overrides({"device": job.device})
        checkpoint = Path(job.work_dir) / CHECKPOINT_NAME
        if params.fresh:
            shutil.rmtree(job.work_dir, ignore_errors=True)
        feature_file = _input(job, "features")
        # The purge between parts: the label horizon plus the spec's real longest look-back
        # (never less than the configured one).
        spec = params.window_spec
        spec = replace(
            spec, longest_feature_window=max(spec.longest_feature_window, spec_lookback(feature_file, job.unit, params))
        )
        dataset = load_symbol_dataset(
            feature_file,
            spec,
            expected_hash=params.expected_hash,
            recomputed_hash=recomputed_feature_hash(feature_file, job.unit, params),
        )
        if dataset.symbol != job.unit:
            raise BadTrainingConfig(f"{feature_file} holds features for {dataset.symbol}, not {job.unit}")
        device = pick_device(config.device)
        precision = pick_precision(config.precision, device)
        on_progress(
            Progress(
                job.unit,
                0,
                config.epochs,
                kind="start",
                metrics={
                    "rows": len(dataset.features),
                    "features": dataset.input_size,
                    "train": len(dataset.train_ends),
                    "val": len(dataset.val_ends),
                    "test": len(dataset.test_ends),
                    "purge_gap": dataset.spec.purge_gap,
                    "resumed_from": checkpoint_epoch(checkpoint),
                },
                notes={
                    "device": str(device),
                    "precision": precision,
                    "cuda_graph": "on" if graph_wanted(config.cuda_graph, device, precision) else "off",
                },
            )
        )
        began = time.time()

        def epoch_line(record: Any) -> None:
            # fit() has saved this epoch's checkpoint by now; describe it before announcing the
            # epoch, so whoever acts on the line finds the record that matches.
            record_checkpoint(checkpoint, record.epoch)
            on_progress(
                Progress(
                    job.unit,
                    record.epoch,
                    config.epochs,
                    metrics={
                        "loss": record.loss,
                        "val_loss": record.val_loss,
                        "val_metric": record.val_accuracy,
                        "val_accuracy": record.val_accuracy,
                        "seconds": round(record.seconds, 3),
                    },
                )
            )

        result = fit(dataset, config, checkpoint, on_epoch=epoch_line)
        costs = TradingCosts.for_symbol(job.costs, job.unit) if job.costs else TradingCosts()
        p_val = result.validation_probabilities()
        shift = logit_shift(p_val, dataset.labels[dataset.val_ends]) if config.recenter else 0.0
        if shift:
            shift_output(result.model, shift)
            p_val = result.validation_probabilities()
        gate_min_trades = int(params.gates.min_trades or MIN_TRADES)
        saved_config, decision = decision_band(config, dataset, p_val, costs, gate_min_trades)
        decision["logit_shift"] = round(shift, 6)
        return FittedLstm(job.unit, dataset, result, saved_config, decision, costs, params, time.time() - began)

    # --- judge ------------------------------------------------------------------------------

    def evaluate(self, fitted: FittedLstm, job: FitJob) -> Evaluation:
        from training.families.lstm.judge import evaluation

        return evaluation(
            fitted.unit, fitted.dataset, fitted.test_probabilities(), fitted.costs, fitted.config.threshold
        )

    def rules(self, params: Mapping[str, Any]) -> tuple[GateRule, ...]:
        from training.families.lstm.judge import lstm_rules

        return lstm_rules(LstmParams.from_mapping(params))

    # --- save and load ----------------------------------------------------------------------

    def save(self, fitted: FittedLstm, folder: Path) -> tuple[str, ...]:
        from training.families.lstm.fit import atomic_torch_save
        from training.families.lstm.judge import judged_figures
        from training.families.lstm.saved import model_payload

        ds, result = fitted.dataset, fitted.result
        payload = model_payload(
            result.model,
            symbol=fitted.unit,
            feature_names=ds.feature_names,
            feature_hash=ds.feature_hash,
            spec_version=ds.spec_version,
            scaler=ds.scaler,
            config=fitted.config.to_dict(),
            dropout=fitted.config.dropout,
        )
        atomic_torch_save(payload, folder / "model.pt")
        metrics = judged_figures(ds, fitted.test_probabilities(), fitted.costs, fitted.config.threshold)
        metrics["decision"] = fitted.decision
        metrics["training"] = {
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "stopped_early": result.stopped_early,
            "resumed_from_epoch": result.resumed_from_epoch,
            "device": result.device,
            "precision": result.precision,
            "seconds": round(fitted.seconds, 3),
        }
        gates = {**asdict(fitted.params.gates), "alpha": fitted.params.alpha}
        save_json(
            folder / "config.json",
            {
                "family": self.name,
                "format": self.artifact_format,
                "train": fitted.config.to_dict(),
                "costs": asdict(fitted.costs),
                "gates": gates,
            },
        )
        save_json(folder / "metrics.json", metrics)
        save_json(
            folder / "features.json",
            {
                "symbol": fitted.unit,
                "feature_names": list(ds.feature_names),
                "feature_count": ds.input_size,
                "feature_hash": ds.feature_hash,
                "spec_version": ds.spec_version,
                "timeframe": str((fitted.params.features or {}).get("timeframe") or "1m"),
                "scaler": ds.scaler.to_dict(),
                "trained_until": trained_until(ds),
                "judged_until": judged_until(ds),
                "holdout_fraction": ds.spec.holdout_fraction,
            },
        )
        save_json(folder / "training_log.json", [vars(h) for h in result.history])
        return MODEL_FILES

    def load(self, folder: Path) -> "LoadedModel":
        """The model in ``folder`` (``model.pt`` read with weights only: nothing in it runs)."""
        from training.families.lstm.saved import load_model

        return load_model(Path(folder) / "model.pt")

    def predictor(self, folder: Path) -> Predictor:
        return self.load(folder)

    def baseline(self, folder: Path | None) -> LastMovePredictor:
        """Repeat the last move, over the saved model's horizon when there is one."""
        if folder is None or not (Path(folder) / "features.json").is_file():
            return LastMovePredictor()
        try:
            model = self.load(folder)
        except Exception:  # noqa: BLE001 - an unreadable model has no horizon to offer; the default stands
            return LastMovePredictor()
        return LastMovePredictor(max(2, model.window), model.horizon)

    # --- for the conformance test and the benches --------------------------------------------

    def synthetic_job(self, root: Path, *, skill: bool, seed: int = 0) -> FitJob:
        """BTC-USD on made-up features: with ``skill`` the next move leans hard on a lagged
        feature (learnable after costs); without it the moves are pure noise."""
        from training.families.lstm.synthetic import synthetic_hash, write_synthetic_feature_file

        root = Path(root)
        path = write_synthetic_feature_file(
            root / "features", "BTC-USD", 2400, 4, seed=seed, signal=1.0 if skill else 0.0
        )
        params = {
            "train": {
                "epochs": 4,
                "window": 8,
                "horizon": 1,
                "longest_feature_window": 10,
                "hidden_size": 16,
                "num_layers": 1,
                "batch_size": 128,
                "learning_rate": 0.005,
                "patience": 10,
                "seed": 1000 + seed,
                "device": "cpu",
                "tune_threshold": False,
            },
            "gates": {"min_trades": 30, "beat_baselines": True},
            "expected_feature_hash": synthetic_hash(4),
        }
        costs = {"default": {"fee_bps": 0.5, "spread_bps": 0.2, "slippage_bps": 0.1}}
        return FitJob(self.name, "BTC-USD", {"features": path}, root / "work", params=params, costs=costs, seed=seed)


def record_checkpoint(checkpoint: Path, epoch: int) -> dict[str, Any]:
    """Write ``last.json`` beside ``checkpoint`` (atomically): its epoch, size and sha256."""
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    record = {
        "file": checkpoint.name,
        "epoch": int(epoch),
        "size": checkpoint.stat().st_size,
        "sha256": digest.hexdigest(),
    }
    registry.write_json_atomic(checkpoint.with_name(CHECKPOINT_RECORD), record)
    return record


def checkpoint_epoch(path: Path) -> int:
    """The epoch a checkpoint holds (0 when there is none, or it cannot be read: fit reports that)."""
    if not Path(path).exists():
        return 0
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - fit() reports an unreadable checkpoint properly; here it is only a label
        return 0


def trained_until(dataset: "SymbolDataset") -> str | None:
    """The newest bar that influenced the model: the last validation window's label bar.

    Training and early stopping saw nothing later; the dry run judges the model only on
    bars after this (the test part and anything newer), so its hit rate is out of sample.
    """
    if not len(dataset.timestamps) or not len(dataset.val_ends):
        return None
    row = min(int(dataset.val_ends.max()) + dataset.spec.horizon, len(dataset.timestamps) - 1)
    import pandas as pd

    return str(pd.Timestamp(dataset.timestamps[row]).tz_localize(None).isoformat()) + "Z"


def judged_until(dataset: "SymbolDataset") -> str | None:
    """The newest bar that decided promotion: the last test window's label bar.

    The dry run and the gate judge only later bars (the holdout and anything newer), so
    the figure that approves going live is never the one that promoted the model.
    """
    if not len(dataset.timestamps) or not len(dataset.test_ends):
        return None
    row = min(int(dataset.test_ends.max()) + dataset.spec.horizon, len(dataset.timestamps) - 1)
    import pandas as pd

    return str(pd.Timestamp(dataset.timestamps[row]).tz_localize(None).isoformat()) + "Z"


def _input(job: FitJob, channel: str) -> Path:
    try:
        return Path(job.inputs[channel])
    except KeyError:
        raise MissingFeatureInput(f"the {job.unit} job was given no {channel!r} input") from None
