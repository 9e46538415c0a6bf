"""A ``gbm`` head on disk: written whole, read back without running anything.

`save_head` writes the seed's files (see `training.families.gbm`); `load_head` parses the
text model, loads the encoder copy (arrays only, its hash checked against its record)
and refuses a head whose pinned encoder hash differs. `SavedHead.predict` is the runtime
path: raw feature rows, scaled as in training, encoded, boosted into P(up).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.atomic import atomic_path
from training.dataset import Scaler
from training.errors import CheckpointMismatch
from training.families.artifacts import check_format, load_json, save_json
from training.families.gbm.encoder import SharedEncoder, check_pinned
from training.families.gbm.head import booster_from_text, read_text

if TYPE_CHECKING:  # pragma: no cover
    from training.families.gbm import FittedGbm, GbmFamily

MODEL_FILE = "model.bin"
FILES = (
    MODEL_FILE,
    "config.json",
    "metrics.json",
    "costs.json",
    "features.json",
    "split_indices.json",
    "features.parquet",
    "training_log.json",
)


@dataclass
class SavedHead:
    """A loaded head with everything the runtime needs to call it."""

    unit: str
    booster: Any
    encoder: SharedEncoder
    feature_names: tuple[str, ...]
    scaler: Scaler
    horizon: int
    threshold: float
    name: str = "gbm head"
    trained: bool = True

    def predict(self, rows: Any) -> np.ndarray:
        """P(up) for raw feature rows (a frame with the feature columns, or an array in their order)."""
        if hasattr(rows, "loc"):
            rows = rows.loc[:, list(self.feature_names)].to_numpy(dtype=np.float64)
        scaled = self.scaler.transform(np.asarray(rows, dtype=np.float64))
        where = {n: i for i, n in enumerate(self.feature_names)}
        cols = np.array([where[n] for n in self.encoder.feature_names], dtype=np.int64)
        components = (scaled[:, cols].astype(np.float64) - self.encoder.mean) @ self.encoder.components.T
        return np.asarray(self.booster.predict(components), dtype=np.float64)


def save_head(family: "GbmFamily", fitted: "FittedGbm", folder: Path) -> tuple[str, ...]:
    from training.families.gbm.judge import figures

    ds, head = fitted.dataset, fitted.head
    with atomic_path(folder / MODEL_FILE) as tmp:
        tmp.write_text(head.to_text())
    encoder_files = fitted.encoder.save(folder)
    metrics = figures(fitted)
    metrics["decision"] = fitted.decision
    metrics["training"] = {
        "best_round": head.best_round,
        "rounds_run": head.rounds_run,
        "resumed": head.resumed,
        "seconds": round(fitted.seconds, 3),
    }
    save_json(
        folder / "config.json",
        {
            "family": family.name,
            "format": family.artifact_format,
            "params": fitted.params.to_dict(),
            "encoder_hash": fitted.encoder.hash,
            "threshold": fitted.threshold,
        },
    )
    save_json(folder / "metrics.json", metrics)
    save_json(folder / "costs.json", {"symbol": fitted.unit, **asdict(fitted.costs)})
    save_json(
        folder / "features.json",
        {
            "symbol": fitted.unit,
            "feature_names": list(ds.feature_names),
            "feature_count": ds.input_size,
            "feature_hash": ds.feature_hash,
            "spec_version": ds.spec_version,
            "scaler": ds.scaler.to_dict(),
            "encoder_features": list(fitted.encoder.feature_names),
            "components": fitted.encoder.n_components,
        },
    )
    save_json(
        folder / "split_indices.json",
        {
            part: {"first": int(ends[0]), "last": int(ends[-1]), "count": len(ends)} if len(ends) else {"count": 0}
            for part, ends in (("train", ds.train_ends), ("val", ds.val_ends), ("test", ds.test_ends))
        }
        | {"purge_gap": ds.spec.purge_gap, "horizon": ds.spec.horizon},
    )
    _save_test_components(folder / "features.parquet", fitted)
    save_json(folder / "training_log.json", head.history)
    return (*FILES, *encoder_files)


def _save_test_components(path: Path, fitted: "FittedGbm") -> None:
    """The components of the test rows the head was judged on (what the seed keeps as features.parquet)."""
    import pandas as pd

    ends = fitted.dataset.test_ends
    frame = pd.DataFrame(fitted.components[ends], columns=[f"pc{i}" for i in range(fitted.encoder.n_components)])
    frame.insert(0, "row", ends)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def load_head(folder: Path, artifact_format: str) -> SavedHead:
    config = load_json(folder / "config.json")
    if not isinstance(config, dict):
        raise CheckpointMismatch(f"{folder / 'config.json'} is not a model config")
    check_format(config, artifact_format, folder)
    features = load_json(folder / "features.json")
    if not isinstance(features, dict):
        raise CheckpointMismatch(f"{folder / 'features.json'} is not a feature record")
    booster = booster_from_text(read_text(folder / MODEL_FILE), folder / MODEL_FILE)
    encoder = SharedEncoder.load(folder)
    check_pinned(str(config.get("encoder_hash", "")), encoder, folder / MODEL_FILE)
    try:
        return SavedHead(
            unit=str(features["symbol"]),
            booster=booster,
            encoder=encoder,
            feature_names=tuple(str(n) for n in features["feature_names"]),
            scaler=Scaler.from_dict(features["scaler"]),
            horizon=int(config["params"]["split"]["horizon"]),
            threshold=float(config.get("threshold", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointMismatch(f"{folder} has an incomplete model record ({exc}); download it again") from None
