"""The ``regime`` family: which of five market regimes the next ``horizon`` trading days will be.

Input: the context table (`training.families.investment`), one file, ``context``. The
label of a day is the regime `rule.RegimeRule` assigns to the *following* ``horizon``
days; the model (GRU by default, or a Transformer: ``model_type``/``regime-type``) reads
the last ``window`` days of the eight context features, scaled with the training part's
mean and deviation, and is trained with class weights (rare regimes count) and early
stopping, resumable per epoch (`training.families.investment.epochs`).

It is judged on the test part against the persistence and majority baselines
(`judge`) and passes only when its macro-F1 beats both, significantly. A saved model is
``weights.npz`` (plain arrays, no pickle) and ``config.json`` (type, sizes, scaler,
the fitted rule), plus ``metrics.json`` and ``training_log.json``. Its predictor and its
fallback (`rule.RuleRegimePredictor`) answer in the seed's format::

    {"regime_label": "risk_on_trend", "regime_probs": {five names: p}, "regime_embedding": [8 floats]}
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
from training.families.investment import CONTEXT_COLUMNS, CONTEXT_FEATURES
from training.families.investment.params import input_path, read_params
from training.families.regime.rule import DEFAULT_RULE, RegimeRule, RuleRegimePredictor, regime_output

DEFAULTS: dict[str, Any] = {
    "model_type": "gru",
    "epochs": 100,
    "batch_size": 32,
    "window": 5,
    "horizon": 10,
    "hidden": 16,
    "learning_rate": 0.003,
    "patience": 12,
    "alpha": 0.05,
    "min_samples": 50,
    "fresh": False,
    "device": "auto",
}
CHOICES = {"model_type": ("gru", "transformer"), "device": ("auto", "cpu", "cuda")}
MODEL_FILES = ("weights.npz", "config.json", "metrics.json", "training_log.json")
CHECKPOINT = "regime_last.pt"


@dataclass
class FittedRegime:
    samples: Any
    """`judge.RegimeSamples`."""
    net: Any
    params: dict[str, Any]
    outcome: Any
    seconds: float
    evaluation: Evaluation | None = None
    """Kept once judged: saving shows the same figures without judging again."""

    def probabilities(self, ends: np.ndarray) -> np.ndarray:
        return _probabilities(self.net, self.samples.windows(ends))


def _probabilities(net: Any, windows: np.ndarray) -> np.ndarray:
    import torch

    net.eval()
    device = next(net.parameters()).device
    with torch.no_grad():
        logits = net(torch.from_numpy(windows).to(device)).float()
        return torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)


class RegimeFamily:
    """The market-regime classifier (`training.families.base.ModelFamily`)."""

    name: ClassVar[str] = "regime"
    artifact_format: ClassVar[str] = "retrain-console/regime/1"

    def inputs(self, params: Mapping[str, Any]) -> tuple[InputNeed, ...]:
        return (InputNeed("context", "the context table, one row per trading day", CONTEXT_COLUMNS, per_unit=False),)

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return read_params(params, DEFAULTS, self.name, CHOICES)

    def fit(self, job: FitJob, on_progress: ProgressSink) -> FittedRegime:
        import torch

        from training.families.investment.data import read_table
        from training.families.investment.epochs import EpochSettings, run_epochs
        from training.families.regime.judge import class_weights, prepare
        from training.families.regime.network import RegimeNet

        params = self.check_params(job.params)
        if params["fresh"]:
            shutil.rmtree(job.work_dir, ignore_errors=True)
        frame = read_table(_input(job, "context"), "context")
        samples = prepare(frame, params["window"], params["horizon"])
        settings = EpochSettings(
            params["epochs"],
            params["batch_size"],
            params["learning_rate"],
            params["patience"],
            1000 + job.seed,
            params["device"] if params["device"] != "auto" else job.device,
        )
        torch.manual_seed(settings.seed)
        net = RegimeNet(params["model_type"], len(CONTEXT_FEATURES), params["hidden"], params["window"])
        weights = torch.tensor(class_weights(samples.labels[samples.train]), dtype=torch.float32)
        began = time.time()
        on_progress(
            Progress(
                job.unit,
                0,
                params["epochs"],
                kind="start",
                metrics={
                    "days": len(frame),
                    "train": len(samples.train),
                    "val": len(samples.val),
                    "test": len(samples.test),
                },
                notes={"model_type": params["model_type"]},
            )
        )

        def loss(model: Any, batch: Any) -> Any:
            x, y = batch
            return torch.nn.functional.cross_entropy(model(x).float(), y, weight=weights.to(x.device))

        def tensors(ends: np.ndarray) -> list[Any]:
            return [torch.from_numpy(samples.windows(ends)), torch.from_numpy(samples.labels[ends])]

        def epoch_line(record: dict[str, float]) -> None:
            metrics = {k: v for k, v in record.items() if k != "epoch"}
            on_progress(Progress(job.unit, int(record["epoch"]), params["epochs"], metrics=metrics))

        outcome = run_epochs(
            net,
            loss,
            tensors(samples.train),
            tensors(samples.val),
            settings,
            Path(job.work_dir) / CHECKPOINT,
            epoch_line,
        )
        return FittedRegime(samples, net, params, outcome, time.time() - began)

    def evaluate(self, fitted: FittedRegime, job: FitJob) -> Evaluation:
        from training.families.regime.judge import evaluation

        if fitted.evaluation is None:
            fitted.evaluation = evaluation(
                fitted.samples, fitted.probabilities(fitted.samples.test), fitted.params["alpha"]
            )
        return fitted.evaluation

    def rules(self, params: Mapping[str, Any]) -> tuple[GateRule, ...]:
        from training.families.regime.judge import regime_rules

        checked = self.check_params(params)
        return regime_rules(checked["min_samples"], checked["alpha"])

    def save(self, fitted: FittedRegime, folder: Path) -> tuple[str, ...]:
        from training.families.artifacts import state_dict_to_arrays

        folder = Path(folder)
        s, p, o = fitted.samples, fitted.params, fitted.outcome
        save_arrays(folder / "weights.npz", state_dict_to_arrays(fitted.net.state_dict()))
        save_json(
            folder / "config.json",
            {
                "family": self.name,
                "format": self.artifact_format,
                "model_type": p["model_type"],
                "hidden": p["hidden"],
                "window": p["window"],
                "features": list(CONTEXT_FEATURES),
                "mean": s.mean.tolist(),
                "std": s.std.tolist(),
                "rule": s.rule.to_dict(),
                "majority": s.majority,
                "params": p,
            },
        )
        evaluation = self.evaluate(fitted, FitJob(self.name, self.name, {}, Path(".")))
        save_json(
            folder / "metrics.json",
            {
                **evaluation.metrics,
                "model_type": p["model_type"],
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

    def load(self, folder: Path) -> "TrainedRegimePredictor":
        """The saved model: JSON and plain arrays only, so nothing in the files can run."""
        from training.families.artifacts import arrays_to_state_dict
        from training.families.regime.network import RegimeNet

        folder = Path(folder)
        config = load_json(folder / "config.json")
        if not isinstance(config, dict):
            raise CheckpointMismatch(f"{folder / 'config.json'} is not a regime model's config")
        check_format(config, self.artifact_format, folder)
        try:
            net = RegimeNet(
                str(config["model_type"]), len(config["features"]), int(config["hidden"]), int(config["window"])
            )
            net.load_state_dict(arrays_to_state_dict(load_arrays(folder / "weights.npz")))
            rule = RegimeRule.from_dict(config["rule"])
            mean, std = np.asarray(config["mean"], float), np.asarray(config["std"], float)
        except CheckpointMismatch:
            raise
        except Exception as exc:  # noqa: BLE001 - any mismatch of shapes or keys means the same to the operator
            raise CheckpointMismatch(f"{folder} does not hold a loadable regime model ({type(exc).__name__})") from None
        net.eval()
        return TrainedRegimePredictor(net, tuple(config["features"]), mean, std, int(config["window"]), rule)

    def predictor(self, folder: Path) -> Predictor:
        return self.load(folder)

    def baseline(self, folder: Path | None) -> RuleRegimePredictor:
        """The rule over the last days, with the saved model's fitted thresholds when there are any."""
        if folder is not None:
            try:
                config = load_json(Path(folder) / "config.json")
                return RuleRegimePredictor(RegimeRule.from_dict(config["rule"]))
            except Exception:  # noqa: BLE001 - no readable thresholds: the documented defaults stand
                pass
        return RuleRegimePredictor(DEFAULT_RULE)

    def synthetic_job(self, root: Path, *, skill: bool, seed: int = 0) -> FitJob:
        """The made-up daily market (`training.families.investment.synthetic`): regimes with
        a news tone that leads them when ``skill``, a random walk otherwise."""
        from training.families.investment.synthetic import write_synthetic_tables

        root = Path(root)
        context, _ = write_synthetic_tables(root / "data", 2000, 1, seed=seed, structured=skill)
        params = {"epochs": 60, "batch_size": 64, "patience": 10, "device": "cpu"}
        return FitJob(self.name, self.name, {"context": context}, root / "work", params=params, seed=seed)


@dataclass
class TrainedRegimePredictor:
    """A loaded regime model; ``predict(context table)`` answers for the table's last day."""

    net: Any
    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    window: int
    rule: RegimeRule
    name: str = "regime model"
    trained: bool = True

    def predict(self, rows: Any) -> dict[str, Any]:
        import torch

        missing = [c for c in self.features if c not in rows]
        if missing:
            raise CheckpointMismatch(f"the context rows lack {', '.join(missing)}")
        x = np.column_stack([np.asarray(rows[c], dtype=np.float64) for c in self.features])
        if len(x) < self.window:
            raise CheckpointMismatch(f"the regime model needs {self.window} days of context, got {len(x)}")
        window = ((x[-self.window :] - self.mean) / self.std).astype(np.float32)[None]
        with torch.no_grad():
            tensor = torch.from_numpy(window)
            embedding = self.net.embedding(tensor)
            probs = torch.softmax(self.net.head(embedding), dim=1)
        return regime_output(probs[0].numpy(), embedding[0].numpy())


def _input(job: FitJob, channel: str) -> Path:
    return input_path(job, channel)
