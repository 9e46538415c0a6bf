"""One coin's boosted head: LightGBM over the shared encoder's components, early-stopped.

The head is trained on the coin's training rows and stopped on its validation rows
(binary log-loss); the test rows are never shown to it. Its checkpoint is LightGBM's own
text model (``head.txt``) with a record beside it (``head.json``: the encoder hash, a
fingerprint of the rows it was fitted on, the best round): a rerun with the same work
directory, encoder and rows takes the finished head instead of boosting again, and any
difference (new encoder, new data) refits it.

With ``engine = "xgboost"`` the head is XGBoost's (``hist`` trees, the same early stopping)
and its text model is XGBoost's JSON.

The text model is parsed, never executed: a tampered ``model.bin`` is refused as a bad
model file, nothing in it runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from training.atomic import atomic_path
from training.errors import CheckpointMismatch
from training.families.artifacts import load_json, save_json
from training.families.gbm.params import HeadConfig

CHECKPOINT = "head.txt"
CHECKPOINT_RECORD = "head.json"


@dataclass
class Head:
    """A fitted booster and how it was fitted."""

    booster: Any
    best_round: int
    rounds_run: int
    resumed: bool
    history: list[dict[str, float]] = field(default_factory=list)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(np.asarray(rows, dtype=np.float64)), dtype=np.float64)

    def to_text(self) -> str:
        return str(self.booster.model_to_string())


def fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return "sha256:" + digest.hexdigest()


class XgbBooster:
    """An XGBoost booster with LightGBM's two verbs (``predict`` on rows, ``model_to_string``)."""

    def __init__(self, booster: Any, best_round: int) -> None:
        self.booster, self.best_round = booster, best_round

    def predict(self, rows: Any) -> Any:
        import xgboost as xgb

        return self.booster.predict(
            xgb.DMatrix(np.asarray(rows, dtype=np.float32)), iteration_range=(0, self.best_round)
        )

    def model_to_string(self) -> str:
        return str(self.booster.save_raw("json").decode())


def booster_from_text(text: str, where: Path) -> Any:
    """A LightGBM (text) or XGBoost (JSON) booster parsed from its model file; anything else is refused."""
    import lightgbm as lgb

    if text.startswith("{"):
        return _xgb_from_json(text, where)
    if not text.startswith("tree\n"):
        raise CheckpointMismatch(f"{where} is not a LightGBM text model; download the model again")
    try:
        return lgb.Booster(model_str=text)
    except Exception as exc:  # noqa: BLE001 - LightGBM's parse errors have no common type
        raise CheckpointMismatch(f"{where} is not a readable LightGBM model ({exc}); download it again") from None


def _xgb_from_json(text: str, where: Path) -> XgbBooster:
    import xgboost as xgb

    try:
        booster = xgb.Booster()
        booster.load_model(bytearray(text.encode()))
        best = int(booster.attr("best_iteration") or booster.num_boosted_rounds() - 1) + 1
    except Exception as exc:  # noqa: BLE001 - XGBoost's parse errors have no common type
        raise CheckpointMismatch(f"{where} is not a readable XGBoost model ({exc}); download it again") from None
    return XgbBooster(booster, best)


def read_text(path: Path) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointMismatch(f"{path} is not a text model ({exc.__class__.__name__}); download it again") from None


def fit_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: HeadConfig,
    *,
    work_dir: Path,
    encoder_hash: str,
    seed: int,
    on_round: Callable[[int, float], None] = lambda r, loss: None,
) -> Head:
    """Boost on the training rows, stop on the validation rows; resume a finished head from ``work_dir``."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = fingerprint(x_train, y_train, x_val, y_val)
    settings = json.dumps(
        {k: v for k, v in vars(config).items() if k not in ("tune_threshold", "threshold")}, sort_keys=True
    )
    record_path, model_path = work_dir / CHECKPOINT_RECORD, work_dir / CHECKPOINT
    if record_path.is_file() and model_path.is_file():
        try:
            record = load_json(record_path)
            if (record.get("encoder_hash"), record.get("rows"), record.get("settings"), record.get("seed")) == (
                encoder_hash,
                rows,
                settings,
                seed,
            ):
                booster = booster_from_text(read_text(model_path), model_path)
                return Head(booster, int(record["best_round"]), int(record["rounds_run"]), True, record.get("log", []))
        except CheckpointMismatch:
            pass  # a broken checkpoint is refitted, never trusted
    history: list[dict[str, float]] = []

    def record_round(env: Any) -> None:
        loss = float(env.evaluation_result_list[0][2])
        history.append({"round": env.iteration + 1, "val_log_loss": loss})
        on_round(env.iteration + 1, loss)

    if config.engine == "xgboost":
        head = _fit_xgboost(x_train, y_train, x_val, y_val, config, seed, history, on_round)
    else:
        head = _fit_lightgbm(x_train, y_train, x_val, y_val, config, seed, history, record_round)
    with atomic_path(model_path) as tmp:
        tmp.write_text(head.to_text())
    save_json(
        record_path,
        {
            "encoder_hash": encoder_hash,
            "rows": rows,
            "settings": settings,
            "seed": seed,
            "best_round": head.best_round,
            "rounds_run": head.rounds_run,
            "log": history,
        },
    )
    return head


def _fit_lightgbm(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: HeadConfig,
    seed: int,
    history: list[dict[str, float]],
    record_round: Callable[[Any], None],
) -> Head:
    import lightgbm as lgb

    # float32 as the encoder gives it: LightGBM bins it without a float64 copy.
    train = lgb.Dataset(np.asarray(x_train, dtype=np.float32), label=np.asarray(y_train), free_raw_data=True)
    val = lgb.Dataset(np.asarray(x_val, dtype=np.float32), label=np.asarray(y_val), reference=train)
    booster = lgb.train(
        {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": config.learning_rate,
            "num_leaves": config.num_leaves,
            "min_data_in_leaf": config.min_data_in_leaf,
            "feature_fraction": config.feature_fraction,
            "max_bin": config.max_bin,
            "num_threads": config.threads,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        },
        train,
        num_boost_round=config.rounds,
        valid_sets=[val],
        valid_names=["val"],
        callbacks=[lgb.early_stopping(config.early_stopping, verbose=False), record_round],
    )
    best = int(booster.best_iteration or len(history))
    return Head(booster, best, len(history), False, history)


def _fit_xgboost(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: HeadConfig,
    seed: int,
    history: list[dict[str, float]],
    on_round: Callable[[int, float], None],
) -> Head:
    import xgboost as xgb

    train = xgb.DMatrix(np.asarray(x_train, dtype=np.float32), label=np.asarray(y_train))
    val = xgb.DMatrix(np.asarray(x_val, dtype=np.float32), label=np.asarray(y_val))

    class Record(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            loss = float(evals_log["val"]["logloss"][-1])
            history.append({"round": epoch + 1, "val_log_loss": loss})
            on_round(epoch + 1, loss)
            return False

    booster = xgb.train(
        {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "eta": config.learning_rate,
            "max_leaves": config.num_leaves,
            "grow_policy": "lossguide",
            "tree_method": "hist",
            "max_bin": config.max_bin,
            "min_child_weight": max(1.0, config.min_data_in_leaf / 4),
            "colsample_bytree": config.feature_fraction,
            "nthread": config.threads,
            "seed": seed,
        },
        train,
        num_boost_round=config.rounds,
        evals=[(val, "val")],
        early_stopping_rounds=config.early_stopping,
        verbose_eval=False,
        callbacks=[Record()],
    )
    best = int(booster.best_iteration) + 1
    return Head(XgbBooster(booster, best), best, len(history), False, history)
