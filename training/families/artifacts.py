"""Saving and loading model files without pickle: arrays as ``.npz``, settings as JSON.

A file that crossed a network must never run code when it is loaded. ``np.load`` with
``allow_pickle=False`` only reads numeric arrays, so a tampered ``weights.npz`` can give
wrong numbers (which the sha256 in ``sha256.txt`` catches) but never execute anything.
Torch modules go through `state_dict_to_arrays` / `arrays_to_state_dict`; text formats
of other libraries (LightGBM's model string, XGBoost's JSON) are plain text already.

Every write is atomic (temp file, fsync, rename): a reader sees the old file or the new.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from training.atomic import atomic_path
from training.errors import CheckpointMismatch


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (.npz, uncompressed), atomically. Object arrays are refused."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; only numeric arrays are saved")
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]  # names, not flags


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read an .npz written by `save_arrays`; anything needing pickle is refused."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, KeyError) as exc:  # pickled content, truncated, or not an npz
        raise CheckpointMismatch(f"{path} is not a plain array file ({exc}); download the model again") from None


def save_json(path: Path, data: Any) -> None:
    """Strict JSON (NaN and infinities become null), sorted keys, written atomically."""
    text = json.dumps(_finite(data), indent=2, sort_keys=True, allow_nan=False, default=str)
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text + "\n")


def load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointMismatch(f"{path} is not readable JSON ({exc})") from None


def check_format(config: Mapping[str, Any], expected: str, where: Path) -> None:
    """Refuse a saved model of another family or format version."""
    found = config.get("format")
    if found != expected:
        raise CheckpointMismatch(f"{where} holds a {found!r} model, not {expected!r}")


def state_dict_to_arrays(state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """A torch state dict as NumPy arrays (CPU, float32 where floating)."""
    out = {}
    for key, tensor in state_dict.items():
        value = tensor.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        out[prefix + key] = value.numpy().copy()
    return out


def arrays_to_state_dict(arrays: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, Any]:
    """The inverse of `state_dict_to_arrays` for keys under ``prefix``."""
    import torch

    return {k[len(prefix) :]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)}


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _finite(value.item())
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
