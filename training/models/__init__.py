"""Model classes shared by the trainer and the runtime checks.

The public API, importable from here (torch is imported only when one of these is used,
so the guard and ``--help`` stay fast)::

    load_model(path, *, expected_feature_hash=None) -> LoadedModel
    predict(model, features) -> Prediction        # also LoadedModel.predict(features)
    DirectionLSTM(input_size, hidden_size=64, num_layers=2, dropout=0.1)
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "load_model": "training.models.saved",
    "predict": "training.models.saved",
    "LoadedModel": "training.models.saved",
    "Prediction": "training.models.saved",
    "MODEL_KEYS": "training.models.saved",
    "DirectionLSTM": "training.models.lstm",
    "TrainConfig": "training.models.config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'training.models' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
