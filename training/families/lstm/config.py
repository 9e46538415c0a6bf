"""Training hyper-parameters: one value object, read from a JSON config and overridden by flags.

A config file (``--config PATH``) is JSON with three optional sections::

    {"train": {"epochs": 15, "window": 60, ...},        # TrainConfig fields
     "costs": {"default": {"fee_bps": 10, "spread_bps": 2, "slippage_bps": 2},
               "BTC-USD": {"spread_bps": 1}},
     "gates": {"min_net_return": 0.0, "min_trades": 10, ...},   # see training.registry
     "features": {"multi_timeframe_symbols": [...]}}            # training.features FeatureConfig
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

from training.errors import BadTrainingConfig

SECTIONS = ("train", "costs", "gates", "features")
CUDA_GRAPH_CHOICES = ("off", "auto")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how one symbol's model is trained."""

    epochs: int = 15
    window: int = 60
    horizon: int = 1
    longest_feature_window: int = 200
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    holdout_fraction: float = 0.15
    """The newest share of samples kept from training, validation and test: the dry run and
    the gate judge them (and anything newer), never the test part that promoted the model."""
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.1
    batch_size: int = 512
    sample_stride: int = 1
    """Train each epoch on every k-th training window, the offset rotating from epoch to epoch
    so every window is used; neighbouring windows share all but one bar and almost all of
    their label's horizon, so k a little below the horizon costs little and saves k times."""
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3
    """Epochs without a better validation loss before early stopping."""
    seed: int = 1234
    device: str = "auto"
    """``auto`` (CUDA when present), ``cuda`` or ``cpu``."""
    precision: str = "auto"
    """``auto`` (bf16 on CUDA when supported, else fp16; fp32 on CPU), ``bf16``, ``fp16``, ``fp32``."""
    cuda_graph: str = "off"
    """``auto`` records the train step as one CUDA graph on CUDA in bf16/fp32 (`graphed`),
    ``off`` never. Off by default until it is measured on a GPU against the eager step."""
    recenter: bool = True
    """Shift the output logit by the amount that best fits the validation part's labels
    (`training.families.lstm.recenter`): where "up" begins, chosen without the test part."""
    threshold: float = 0.0
    """The after-cost rule takes a side when |P(up) - 0.5| > threshold (and keeps it inside the band)."""
    tune_threshold: bool = True
    """Widen ``threshold`` to the band with the best after-cost result on the validation part
    (`training.metrics.pick_threshold`); the model keeps the band it was given or chose."""

    def with_overrides(self, overrides: Mapping[str, Any]) -> "TrainConfig":
        """A copy with the given fields replaced (None values are ignored); unknown keys refused."""
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise BadTrainingConfig(f"unknown training setting(s): {', '.join(unknown)}")
        changes = {}
        for key, value in overrides.items():
            if value is None:
                continue
            current = getattr(self, key)
            try:
                changes[key] = type(current)(value)
            except (TypeError, ValueError):
                raise BadTrainingConfig(f"training setting {key}={value!r} is not a {type(current).__name__}") from None
        if changes.get("cuda_graph", "off") not in CUDA_GRAPH_CHOICES:
            choices = " or ".join(CUDA_GRAPH_CHOICES)
            raise BadTrainingConfig(f"training setting cuda_graph={changes['cuda_graph']!r} must be {choices}")
        if changes.get("sample_stride", 1) < 1:
            raise BadTrainingConfig(f"training setting sample_stride={changes['sample_stride']} must be at least 1")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_config_file(path: Path | None) -> dict[str, Any]:
    """The JSON config at ``path`` as a dict with every section in `SECTIONS` (empty if absent)."""
    if path is None:
        return {section: {} for section in SECTIONS}
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadTrainingConfig(f"no training config at {path}") from None
    except (OSError, ValueError) as exc:
        raise BadTrainingConfig(f"training config {path} is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise BadTrainingConfig(f"training config {path} must be a JSON object")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise BadTrainingConfig(f"training config {path} has unknown section(s): {', '.join(unknown)}")
    return {section: dict(data.get(section) or {}) for section in SECTIONS}
