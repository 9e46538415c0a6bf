"""``model.pt``: what a trained model carries, and the load/predict API the runtime checks use.

``model.pt`` is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``)::

    format          "retrain-console/direction-lstm/1"
    symbol          "BTC-USD"
    state_dict      the DirectionLSTM weights (CPU tensors)
    input_size      feature count (== len(feature_names))
    hidden_size, num_layers, dropout
    window, horizon
    feature_names   list, in the order the model reads them
    feature_hash    "sha256:..." of the feature spec it was trained on
    spec_version
    scaler          {"mean": [...], "std": [...]} fitted on the training part only
    config          the TrainConfig as a dict
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from training.dataset import Scaler
from training.errors import CheckpointMismatch
from training.families.lstm.network import DirectionLSTM

MODEL_FORMAT = "retrain-console/direction-lstm/1"
MODEL_KEYS = (
    "format", "symbol", "state_dict", "input_size", "hidden_size", "num_layers", "dropout",
    "window", "horizon", "feature_names", "feature_hash", "spec_version", "scaler", "config",
)  # fmt: skip


def model_payload(
    model: DirectionLSTM,
    *,
    symbol: str,
    feature_names: Sequence[str],
    feature_hash: str,
    spec_version: str,
    scaler: Scaler,
    config: dict[str, Any],
    dropout: float,
) -> dict[str, Any]:
    """The dict written as ``model.pt``."""
    return {
        "format": MODEL_FORMAT,
        "symbol": symbol,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "input_size": model.input_size,
        "hidden_size": model.hidden_size,
        "num_layers": model.num_layers,
        "dropout": float(dropout),
        "window": int(config["window"]),
        "horizon": int(config["horizon"]),
        "feature_names": list(feature_names),
        "feature_hash": feature_hash,
        "spec_version": spec_version,
        "scaler": scaler.to_dict(),
        "config": dict(config),
    }


@dataclass(frozen=True)
class Prediction:
    """One direction call: +1 up, -1 down, with P(up) and a confidence in [0, 1]."""

    direction: int
    probability_up: float

    @property
    def confidence(self) -> float:
        return abs(self.probability_up - 0.5) * 2.0


@dataclass
class LoadedModel:
    """A model.pt read back: the network (eval mode, CPU) and everything needed to feed it."""

    symbol: str
    network: DirectionLSTM
    feature_names: tuple[str, ...]
    feature_hash: str
    spec_version: str
    scaler: Scaler
    window: int
    horizon: int
    config: dict[str, Any]
    name: str = "LSTM"
    """What the dry run calls it (`training.families.base.Predictor`)."""
    trained: bool = True

    @property
    def input_size(self) -> int:
        return self.network.input_size

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """P(up) for unscaled windows shaped (batch, window, features) in ``feature_names`` order."""
        windows = np.asarray(windows, dtype=np.float64)
        if windows.ndim != 3 or windows.shape[2] != self.input_size:
            raise CheckpointMismatch(
                f"model for {self.symbol} reads {self.input_size} features per row, got windows shaped {windows.shape}"
            )
        scaled = self.scaler.transform(windows.reshape(-1, self.input_size)).reshape(windows.shape)
        with torch.no_grad():
            logits = self.network(torch.from_numpy(scaled))
        return torch.sigmoid(logits).numpy().astype(np.float64)

    def predict(self, features: Any) -> Prediction:
        """The call for the bar after the last row of ``features``.

        ``features`` is a DataFrame holding (at least) the model's feature columns, or an
        array (rows, features) already in ``feature_names`` order; the last ``window`` rows are used.
        """
        rows = self._rows(features)
        if len(rows) < self.window:
            raise CheckpointMismatch(f"model for {self.symbol} needs {self.window} rows of features, got {len(rows)}")
        p = float(self.probabilities(rows[-self.window :][None, :, :])[0])
        return Prediction(direction=1 if p > 0.5 else -1, probability_up=p)

    def _rows(self, features: Any) -> np.ndarray:
        if hasattr(features, "columns"):
            missing = [n for n in self.feature_names if n not in features.columns]
            if missing:
                raise CheckpointMismatch(
                    f"model for {self.symbol} needs features the frame lacks: {', '.join(missing[:5])}"
                )
            return features.loc[:, list(self.feature_names)].to_numpy(dtype=np.float64)
        rows = np.asarray(features, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.input_size:
            raise CheckpointMismatch(
                f"model for {self.symbol} reads {self.input_size} features per row, got an array shaped {rows.shape}"
            )
        return rows


def load_model(path: Path, *, expected_feature_hash: str | None = None) -> LoadedModel:
    """Read a ``model.pt`` (weights only, no code executed) into a ready-to-predict model on the CPU."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointMismatch(f"no model file at {path}") from None
    except Exception as exc:  # torch raises many types for a torn or foreign file
        raise CheckpointMismatch(f"{path} is not a readable model file ({type(exc).__name__})") from exc
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise CheckpointMismatch(f"{path} is not a {MODEL_FORMAT} model file")
    missing = [k for k in MODEL_KEYS if k not in data]
    if missing:
        raise CheckpointMismatch(f"{path} lacks {', '.join(missing)}; it cannot be checked or used, retrain it")
    names = data["feature_names"]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise CheckpointMismatch(f"{path} has malformed feature_names; retrain it")
    if expected_feature_hash is not None and data["feature_hash"] != expected_feature_hash:
        raise CheckpointMismatch(
            f"{path} was trained on feature set {data['feature_hash']}, not {expected_feature_hash}; retrain it"
        )
    if data["input_size"] != len(data["feature_names"]):
        raise CheckpointMismatch(f"{path} is inconsistent: input_size {data['input_size']} but "
                                 f"{len(data['feature_names'])} feature names")  # fmt: skip
    network = DirectionLSTM(data["input_size"], data["hidden_size"], data["num_layers"], data["dropout"])
    network.load_state_dict(data["state_dict"])
    network.eval()
    return LoadedModel(
        symbol=data["symbol"],
        network=network,
        feature_names=tuple(data["feature_names"]),
        feature_hash=data["feature_hash"],
        spec_version=data["spec_version"],
        scaler=Scaler.from_dict(data["scaler"]),
        window=int(data["window"]),
        horizon=int(data["horizon"]),
        config=dict(data["config"]),
    )


def predict(model: LoadedModel, features: Any) -> Prediction:
    """Module-level form of `LoadedModel.predict`."""
    return model.predict(features)
