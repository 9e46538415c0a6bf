"""The ``gbm`` family: per-coin LightGBM heads on a shared PCA encoder, judged after costs.

The engine of seed runbook 003. One encoder (`encoder`: PCA over the features all coins
share, fitted on every coin's training rows only, streamed one coin at a time) turns a
coin's scaled features into components; each coin gets its own boosted head (`head`)
over those components, early-stopped on its validation part and judged on its test part
(`judge`): out of sample, after the coin's fees, spread and slippage (`costs`), against
the majority and last-move baselines, with McNemar and block-bootstrap p-values. Only a
head that passes the rules becomes champion (`training.families.run.train_unit`).

A job's inputs: ``features`` (the coin's feature file) and ``encoder`` (the folder of the
shared encoder, one for all coins). Every head pins the encoder's hash; a saved model
carries a copy of its encoder, and loading refuses a head whose pin does not match.

A saved folder: ``model.bin`` (LightGBM's text model), ``encoder.npz``/``encoder.json``,
``config.json``, ``metrics.json``, ``costs.json``, ``features.json``, ``split_indices.json``,
``features.parquet`` (the test part's components, what judged the head) and
``training_log.json``; `train_unit` adds ``evaluation.json``, ``verdict.json``, ``sha256.txt``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from training.errors import BadTrainingConfig, MissingFeatureInput
from training.families.base import FitJob, InputNeed, Predictor, Progress, ProgressSink
from training.families.evaluation import Evaluation, GateRule
from training.families.gbm.encoder import SharedEncoder
from training.families.gbm.params import GbmParams
from training.families.lstm.baseline import LastMovePredictor
from training.metrics import TradingCosts

if TYPE_CHECKING:  # pragma: no cover
    from training.dataset import SymbolDataset
    from training.families.gbm.head import Head
    from training.families.gbm.saved import SavedHead

MODEL_FILE = "model.bin"


@dataclass
class FittedGbm:
    """A fitted head with its encoder, data and judged probabilities."""

    unit: str
    dataset: "SymbolDataset"
    encoder: SharedEncoder
    head: "Head"
    components: np.ndarray
    costs: TradingCosts
    params: GbmParams
    threshold: float
    decision: dict[str, Any]
    seconds: float

    def probabilities(self, ends: np.ndarray) -> np.ndarray:
        return self.head.predict(self.components[ends])


class GbmFamily:
    """Per-coin gradient-boosted heads on a shared encoder (`training.families.base.ModelFamily`)."""

    name: ClassVar[str] = "gbm"
    artifact_format: ClassVar[str] = "retrain-console/gbm-head/1"

    def inputs(self, params: Mapping[str, Any]) -> tuple[InputNeed, ...]:
        return (
            InputNeed("features", "the coin's feature file (training.features; `console features build`)"),
            InputNeed("encoder", "the shared encoder's folder (encoder.npz, encoder.json)", per_unit=False),
        )

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return GbmParams.from_mapping(params).to_dict()

    def fit(self, job: FitJob, on_progress: ProgressSink) -> FittedGbm:
        """Encode the coin's rows, boost its head (resuming a finished one from ``job.work_dir``)."""
        from training.dataset import load_symbol_dataset
        from training.families.gbm.head import fit_head
        from training.metrics import pick_threshold

        params = GbmParams.from_mapping(job.params)
        if params.fresh:
            shutil.rmtree(job.work_dir, ignore_errors=True)
        dataset = load_symbol_dataset(_input(job, "features"), params.split, expected_hash=params.expected_hash)
        if dataset.symbol != job.unit:
            raise BadTrainingConfig(f"the {job.unit} job was given features of {dataset.symbol}")
        encoder = SharedEncoder.load(_input(job, "encoder"))
        components = encoder.transform(dataset)
        on_progress(
            Progress(
                job.unit,
                0,
                params.head.rounds,
                kind="start",
                metrics={
                    "rows": len(dataset.features),
                    "features": dataset.input_size,
                    "components": encoder.n_components,
                    "train": len(dataset.train_ends),
                    "val": len(dataset.val_ends),
                    "test": len(dataset.test_ends),
                },
                notes={"encoder": encoder.hash[:19], "engine": params.head.engine},
            )
        )
        began = time.time()

        def each_round(step: int, loss: float) -> None:
            if step % 10 == 0 or step == 1:
                on_progress(Progress(job.unit, step, params.head.rounds, kind="round", metrics={"val_log_loss": loss}))

        head = fit_head(
            components[dataset.train_ends],
            dataset.labels[dataset.train_ends],
            components[dataset.val_ends],
            dataset.labels[dataset.val_ends],
            params.head,
            work_dir=job.work_dir,
            encoder_hash=encoder.hash,
            seed=job.seed,
            on_round=each_round,
        )
        on_progress(
            Progress(
                job.unit,
                head.rounds_run,
                params.head.rounds,
                kind="round",
                metrics={"best_round": head.best_round},
                notes={"resumed": str(head.resumed).lower()},
            )
        )
        costs = TradingCosts.for_symbol(job.costs, job.unit) if job.costs else TradingCosts()
        threshold, decision = params.head.threshold, {"threshold": params.head.threshold, "chosen_on": "config"}
        if params.head.tune_threshold:
            p_val = head.predict(components[dataset.val_ends])
            threshold, val_net = pick_threshold(
                p_val, dataset.future_return[dataset.val_ends], params.split.horizon, costs, floor=threshold
            )
            decision = {"threshold": threshold, "chosen_on": "validation", "validation_net_return": val_net}
        return FittedGbm(
            job.unit, dataset, encoder, head, components, costs, params, threshold, decision, time.time() - began
        )

    def evaluate(self, fitted: FittedGbm, job: FitJob) -> Evaluation:
        from training.families.gbm.judge import evaluation

        return evaluation(fitted)

    def rules(self, params: Mapping[str, Any]) -> tuple[GateRule, ...]:
        from training.families.gbm.judge import gbm_rules

        return gbm_rules(GbmParams.from_mapping(params))

    def save(self, fitted: FittedGbm, folder: Path) -> tuple[str, ...]:
        from training.families.gbm.saved import save_head

        return save_head(self, fitted, Path(folder))

    def load(self, folder: Path) -> "SavedHead":
        """The head in ``folder`` with its encoder (text and arrays only: nothing in them runs)."""
        from training.families.gbm.saved import load_head

        return load_head(Path(folder), self.artifact_format)

    def predictor(self, folder: Path) -> Predictor:
        return self.load(folder)

    def baseline(self, folder: Path | None) -> LastMovePredictor:
        """Repeat the last move (the same fallback as the direction models)."""
        horizon = 1
        if folder is not None and (Path(folder) / "config.json").is_file():
            try:
                horizon = self.load(folder).horizon
            except Exception:  # noqa: BLE001 - an unreadable model offers no horizon; the default stands
                horizon = 1
        return LastMovePredictor(2, horizon)

    def synthetic_job(self, root: Path, *, skill: bool, seed: int = 0) -> FitJob:
        """Three coins sharing factors; with ``skill`` one coin's next move leans on a shared
        factor the encoder keeps (learnable after costs), without it the moves are noise."""
        from training.families.gbm.synthetic import synthetic_engine_job

        return synthetic_engine_job(Path(root), skill=skill, seed=seed)


def _input(job: FitJob, channel: str) -> Path:
    try:
        return Path(job.inputs[channel])
    except KeyError:
        raise MissingFeatureInput(f"the {job.unit} job was given no {channel!r} input") from None
