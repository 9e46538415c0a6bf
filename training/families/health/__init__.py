"""The ``health`` family: a 0-1 health score per asset and day, from its ten features.

Input: the asset-feature table (`training.families.investment`), one file,
``asset_features``. An autoencoder (default) or VAE (``model_type``/``health-type``)
learns a 16-float latent of the scaled features (early stopping, resumable per epoch,
`training.families.investment.epochs`); a ridge read-out of the latent, fit on the
training part, estimates the asset's next-21-day risk-adjusted return rank, and the
score is that estimate's quantile among the training rows. What every output means is
in `score`; how it is judged (against the 63-day relative-strength rank) in `judge`.

A saved model is ``weights.npz`` (plain arrays) and ``config.json`` (type, scaler,
read-out, score scale, bucket edges), plus ``metrics.json`` and ``training_log.json``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from training.errors import CheckpointMismatch
from training.families.artifacts import check_format, load_arrays, load_json, save_arrays, save_json
from training.families.base import FitJob, InputNeed, Predictor, Progress, ProgressSink
from training.families.evaluation import Evaluation, GateRule
from training.families.health.judge import MIN_TEST_DAYS
from training.families.health.score import (
    RuleHealthPredictor,
    ScoreScale,
    VolBuckets,
    behaviour,
    health_output,
    last_day,
)
from training.families.investment import ASSET_FEATURES, FEATURE_COLUMNS
from training.families.investment.params import input_path, read_params

DEFAULTS: dict[str, Any] = {
    "model_type": "autoencoder",
    "epochs": 100,
    "batch_size": 64,
    "hidden": 32,
    "learning_rate": 0.002,
    "patience": 10,
    "ridge": 10.0,
    "alpha": 0.05,
    "min_samples": MIN_TEST_DAYS,
    "fresh": False,
    "device": "auto",
}
CHOICES = {"model_type": ("autoencoder", "vae"), "device": ("auto", "cpu", "cuda")}
MODEL_FILES = ("weights.npz", "config.json", "metrics.json", "training_log.json")
CHECKPOINT = "health_last.pt"


@dataclass
class HealthModel:
    """A fitted or loaded health model: the network and the numbers around it."""

    net: Any
    model_type: str
    mean: np.ndarray
    std: np.ndarray
    readout: np.ndarray
    """Ridge weights over [latent, 1]."""
    scale: ScoreScale
    buckets: VolBuckets
    name: str = "health model"
    trained: bool = True

    def latent_and_recon(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        self.net.eval()
        device = next(self.net.parameters()).device
        with torch.no_grad():
            tensor = torch.from_numpy(np.asarray(x, dtype=np.float32)).to(device)
            latent = self.net.latent(tensor).float().cpu().numpy().astype(np.float64)
            error = self.net.reconstruction_error(tensor).float().cpu().numpy().astype(np.float64)
        return latent, error

    def scores(self, latent: np.ndarray) -> np.ndarray:
        return self.scale(_design(latent) @ self.readout)

    def predict(self, rows: Any) -> dict[str, dict[str, Any]]:
        """``{symbol: output}`` for the newest day's rows of an asset-feature table."""
        import pandas as pd

        frame = last_day(rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)).reset_index(drop=True)
        missing = [c for c in ASSET_FEATURES if c not in frame]
        if missing:
            raise CheckpointMismatch(f"the asset rows lack {', '.join(missing)}")
        raw = frame.loc[:, list(ASSET_FEATURES)].to_numpy(dtype=np.float64)
        latent, _ = self.latent_and_recon((raw - self.mean) / self.std)
        score = self.scores(latent)
        bucket = self.buckets(frame["vol_21d"].to_numpy())
        kind = behaviour(*(frame[f"return_{k}d"].to_numpy() for k in (5, 21, 63)))
        return {
            str(sym): health_output(s, b, k, z)
            for sym, s, b, k, z in zip(frame["symbol"], score, bucket, kind, latent, strict=True)
        }


@dataclass
class FittedHealth:
    samples: Any
    """`judge.HealthSamples`."""
    model: HealthModel
    params: dict[str, Any]
    outcome: Any
    seconds: float
    evaluation: Evaluation | None = None
    """Kept once judged: saving shows the same figures without judging again."""


def _design(latent: np.ndarray) -> np.ndarray:
    return np.column_stack([latent, np.ones(len(latent))])


def fit_readout(latent: np.ndarray, target: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge regression of ``target`` on [latent, 1] (the intercept is not shrunk)."""
    design = _design(latent)
    penalty = ridge * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(design.T @ design + penalty, design.T @ target)


class HealthFamily:
    """The asset-health scorer (`training.families.base.ModelFamily`)."""

    name: ClassVar[str] = "health"
    artifact_format: ClassVar[str] = "retrain-console/health/1"

    def inputs(self, params: Mapping[str, Any]) -> tuple[InputNeed, ...]:
        return (
            InputNeed(
                "asset_features", "the asset-feature table, one row per day and symbol", FEATURE_COLUMNS, per_unit=False
            ),
        )

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return read_params(params, DEFAULTS, self.name, CHOICES)

    def fit(self, job: FitJob, on_progress: ProgressSink) -> FittedHealth:
        import torch

        from training.families.health.judge import day_ranks, prepare
        from training.families.health.network import HealthNet
        from training.families.investment.data import read_table
        from training.families.investment.epochs import EpochSettings, run_epochs

        params = self.check_params(job.params)
        if params["fresh"]:
            shutil.rmtree(job.work_dir, ignore_errors=True)
        path = input_path(job, "asset_features")
        samples = prepare(read_table(path, "features"))
        settings = EpochSettings(
            params["epochs"],
            params["batch_size"],
            params["learning_rate"],
            params["patience"],
            1000 + job.seed,
            params["device"] if params["device"] != "auto" else job.device,
        )
        torch.manual_seed(settings.seed)
        net = HealthNet(params["model_type"], len(ASSET_FEATURES), params["hidden"])
        on_progress(
            Progress(
                job.unit,
                0,
                params["epochs"],
                kind="start",
                metrics={"days": samples.days, "train_rows": len(samples.train), "test_rows": len(samples.test)},
                notes={"model_type": params["model_type"]},
            )
        )
        began = time.time()

        def rows(idx: np.ndarray) -> list[Any]:
            return [torch.from_numpy(samples.x[idx].astype(np.float32))]

        def epoch_line(record: dict[str, float]) -> None:
            metrics = {k: v for k, v in record.items() if k != "epoch"}
            on_progress(Progress(job.unit, int(record["epoch"]), params["epochs"], metrics=metrics))

        outcome = run_epochs(
            net,
            lambda model, batch: model.loss(batch[0]),  # type: ignore[operator]  # a HealthNet
            rows(samples.train),
            rows(samples.val),
            settings,
            Path(job.work_dir) / CHECKPOINT,
            epoch_line,
        )
        model = HealthModel(
            net,
            params["model_type"],
            samples.mean,
            samples.std,
            np.zeros(0),
            ScoreScale((0.0,)),
            VolBuckets.fit(samples.frame["vol_21d"].to_numpy()[samples.train]),
        )
        latent, _ = model.latent_and_recon(samples.x[samples.train])
        model.readout = fit_readout(latent, day_ranks(samples.frame, samples.train), params["ridge"])
        model.scale = ScoreScale.fit(_design(latent) @ model.readout)
        return FittedHealth(samples, model, params, outcome, time.time() - began)

    def evaluate(self, fitted: FittedHealth, job: FitJob) -> Evaluation:
        from training.families.health.judge import evaluation

        if fitted.evaluation is None:
            latent, error = fitted.model.latent_and_recon(fitted.samples.x[fitted.samples.test])
            fitted.evaluation = evaluation(
                fitted.samples, fitted.model.scores(latent), float(error.mean()), fitted.params["alpha"]
            )
        return fitted.evaluation

    def rules(self, params: Mapping[str, Any]) -> tuple[GateRule, ...]:
        from training.families.health.judge import health_rules

        checked = self.check_params(params)
        return health_rules(checked["min_samples"], checked["alpha"])

    def save(self, fitted: FittedHealth, folder: Path) -> tuple[str, ...]:
        from training.families.artifacts import state_dict_to_arrays

        folder, m, o = Path(folder), fitted.model, fitted.outcome
        save_arrays(folder / "weights.npz", state_dict_to_arrays(m.net.state_dict()))
        save_json(
            folder / "config.json",
            {
                "family": self.name,
                "format": self.artifact_format,
                "model_type": m.model_type,
                "hidden": fitted.params["hidden"],
                "features": list(ASSET_FEATURES),
                "mean": m.mean.tolist(),
                "std": m.std.tolist(),
                "readout": m.readout.tolist(),
                "score_scale": list(m.scale.points),
                "vol_buckets": [m.buckets.low_high, m.buckets.med_high],
                "params": fitted.params,
            },
        )
        evaluation = self.evaluate(fitted, FitJob(self.name, self.name, {}, Path(".")))
        save_json(
            folder / "metrics.json",
            {
                **evaluation.metrics,
                "model_type": m.model_type,
                "baselines": evaluation.baselines,
                "training": {
                    "best_epoch": o.best_epoch,
                    "epochs_run": len(o.history),
                    "stopped_early": o.stopped_early,
                    "resumed_from_epoch": o.resumed_from_epoch,
                    "device": o.device,
                    "precision": o.precision,
                    "seconds": round(fitted.seconds, 3),
                },
            },
        )
        save_json(folder / "training_log.json", o.history)
        return MODEL_FILES

    def load(self, folder: Path) -> HealthModel:
        """The saved model: JSON and plain arrays only, so nothing in the files can run."""
        from training.families.artifacts import arrays_to_state_dict
        from training.families.health.network import HealthNet

        folder = Path(folder)
        config = load_json(folder / "config.json")
        if not isinstance(config, dict):
            raise CheckpointMismatch(f"{folder / 'config.json'} is not a health model's config")
        check_format(config, self.artifact_format, folder)
        try:
            net = HealthNet(str(config["model_type"]), len(config["features"]), int(config["hidden"]))
            net.load_state_dict(arrays_to_state_dict(load_arrays(folder / "weights.npz")))
            model = HealthModel(
                net,
                str(config["model_type"]),
                np.asarray(config["mean"], float),
                np.asarray(config["std"], float),
                np.asarray(config["readout"], float),
                ScoreScale(tuple(float(v) for v in config["score_scale"])),
                VolBuckets(*map(float, config["vol_buckets"])),
            )
        except CheckpointMismatch:
            raise
        except Exception as exc:  # noqa: BLE001 - any mismatch of shapes or keys means the same to the operator
            raise CheckpointMismatch(f"{folder} does not hold a loadable health model ({type(exc).__name__})") from None
        net.eval()
        return model

    def predictor(self, folder: Path) -> Predictor:
        return self.load(folder)

    def baseline(self, folder: Path | None) -> RuleHealthPredictor:
        """The relative-strength rule, with the saved model's bucket edges when there are any."""
        if folder is not None:
            try:
                return RuleHealthPredictor.from_config(load_json(Path(folder) / "config.json"))
            except Exception:  # noqa: BLE001 - no readable edges: the documented defaults stand
                pass
        return RuleHealthPredictor()

    def synthetic_job(self, root: Path, *, skill: bool, seed: int = 0) -> FitJob:
        """The made-up daily market (`training.families.investment.synthetic`): assets whose
        hidden quality sets their drift and volatility when ``skill``, a random walk otherwise."""
        from training.families.investment.synthetic import write_synthetic_tables

        root = Path(root)
        # 4000 days of 40 assets: the test part then holds twelve 63-day blocks, enough for a real
        # edge to clear p < 0.05 with room (with 1400 days of 30 it held four and did not).
        _, features = write_synthetic_tables(root / "data", 4000, 40, seed=seed, structured=skill)
        params = {"epochs": 8, "batch_size": 512, "patience": 3, "device": "cpu"}
        return FitJob(self.name, self.name, {"asset_features": features}, root / "work", params=params, seed=seed)
