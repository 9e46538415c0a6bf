"""The downloaded models a runtime would trade with: which folder per symbol, what its
checkpoint says, the exact bytes (sha256) the gate pins, and the baseline used when
there is no trained model.

A models directory is an artifact root as `training.registry` lays it out::

    <models_dir>/models/<SYMBOL>/<UTC timestamp>/model.pt, config.json, ... sha256.txt
    <models_dir>/champions/<SYMBOL>.json     (optional) the folder trusted for SYMBOL

For each symbol the champion's folder is used when there is one, else the newest folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from runtime_checks.errors import CheckInputError
from training.registry import sha256_file

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,10}-[A-Z]{3,5}$")
REQUIRED_FILES = ("model.pt", "sha256.txt")
CHECKPOINT_KEYS = ("symbol", "state_dict", "input_size", "feature_names", "feature_hash", "window", "horizon", "scaler")
GATE_FILE = "gate.json"


def check_symbol(symbol: str) -> str:
    """``symbol`` if it is a plain pair like BTC-USD; refuses anything path- or shell-like."""
    from training.data.market import check_symbol as check
    from training.errors import BadMarketData

    try:
        return check(symbol)
    except BadMarketData as exc:
        raise CheckInputError(str(exc)) from None


def models_root(models_dir: Path) -> Path:
    """The artifact root; refuses a directory that does not exist."""
    root = Path(models_dir).expanduser()
    if not root.is_dir():
        raise CheckInputError(f"models directory {root} does not exist (download the models first, or pass --models DIR)")
    return root.resolve()


def symbols_in(models_dir: Path) -> list[str]:
    """Symbols with at least one model folder, sorted."""
    base = models_root(models_dir) / "models"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and SYMBOL_RE.fullmatch(p.name) and _folders(p))


def model_folder(models_dir: Path, symbol: str) -> Path | None:
    """The folder the runtime would load for ``symbol`` (champion, else newest), or None."""
    root = models_root(models_dir)
    check_symbol(symbol)
    pointer = root / "champions" / f"{symbol}.json"
    if pointer.is_file():
        try:
            rel = json.loads(pointer.read_text())["model_dir"]
        except (OSError, ValueError, KeyError, TypeError):
            raise CheckInputError(f"champion pointer {pointer} is unreadable; fix or delete it") from None
        folder = (root / rel).resolve()
        if root not in folder.parents:
            raise CheckInputError(f"champion pointer {pointer} points outside {root}")
        if not folder.is_dir():
            raise CheckInputError(f"champion pointer {pointer} names {rel}, which is missing; download the models again")
        return folder
    folders = _folders(root / "models" / symbol)
    return folders[-1] if folders else None


def _folders(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))


def require_complete(folder: Path) -> None:
    """Refuse a model folder with a required file missing or a file that differs from sha256.txt."""
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise CheckInputError(f"model folder {folder} has no {name}; download it again")
    for line in (folder / "sha256.txt").read_text().splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        name = name.strip()
        if not name or "/" in name or name.startswith("."):
            raise CheckInputError(f"{folder / 'sha256.txt'} names {name!r}, not a file of the folder; download the model again")
        target = folder / name
        if not target.is_file():
            raise CheckInputError(f"model folder {folder} is missing {name} (listed in sha256.txt); download it again")
        if sha256_file(target) != digest.strip():
            raise CheckInputError(f"{target} does not match its sha256 in sha256.txt; download it again")


def model_file_hashes(models_dir: Path, folders: Iterable[Path]) -> dict[str, str]:
    """sha256 of every file in the given model folders, keyed by path relative to the models dir."""
    root = models_root(models_dir)
    out: dict[str, str] = {}
    for folder in folders:
        for item in sorted(Path(folder).iterdir()):
            if item.is_file():
                out[item.resolve().relative_to(root).as_posix()] = sha256_file(item)
    return out


@dataclass(frozen=True)
class CheckpointInfo:
    """What a model.pt says about the features it reads (read without building the network)."""

    symbol: str
    input_size: int
    feature_names: tuple[str, ...]
    feature_hash: str
    window: int
    horizon: int


def read_checkpoint(path: Path) -> tuple[CheckpointInfo, dict[str, Any]]:
    """The checkpoint's feature contract and its raw dict; refuses one without input_size or names."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckInputError(f"no model file at {path}; download the models again") from None
    except Exception as exc:  # torch raises many types for a torn or foreign file
        raise CheckInputError(f"{path} is not a readable model file ({type(exc).__name__}); download it again") from None
    if not isinstance(data, dict):
        raise CheckInputError(f"{path} is not a retrain-console model file (no metadata dict)")
    missing = [k for k in CHECKPOINT_KEYS if k not in data]
    if missing:
        raise CheckInputError(f"{path} lacks {', '.join(missing)}; it cannot be checked for alignment, retrain it")
    names = data["feature_names"]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise CheckInputError(f"{path} has malformed feature_names; retrain it")
    info = CheckpointInfo(str(data["symbol"]), int(data["input_size"]), tuple(names), str(data["feature_hash"]),
                          int(data["window"]), int(data["horizon"]))  # fmt: skip
    return info, data


def load_predictor(folder: Path, symbol: str):  # -> training.models.saved.LoadedModel
    """The trained model in ``folder``, ready to predict; refuses a model trained on another symbol."""
    from training.errors import TrainingError
    from training.models.saved import load_model

    info, _ = read_checkpoint(folder / "model.pt")
    if info.symbol != symbol:
        raise CheckInputError(f"{folder / 'model.pt'} was trained on {info.symbol}, not {symbol}; download the right model")
    try:
        return load_model(folder / "model.pt")
    except TrainingError as exc:
        raise CheckInputError(str(exc)) from None


def trading_costs(folder: Path | None, symbol: str):  # -> training.metrics.TradingCosts
    """The costs the model was judged with (its config.json), else the training defaults."""
    from training.metrics import TradingCosts

    if folder is not None and (folder / "config.json").is_file():
        try:
            costs = json.loads((folder / "config.json").read_text()).get("costs") or {}
            known = {k: float(v) for k, v in costs.items() if k in TradingCosts.__dataclass_fields__}
            return TradingCosts(**known)
        except (OSError, ValueError, TypeError, AttributeError):
            raise CheckInputError(f"{folder / 'config.json'} is unreadable; download the model again") from None
    return TradingCosts()


def trained_until(folder: Path | None) -> Any:
    """The newest bar the model's training data held, when its features.json says so (else None).

    Read from ``trained_until`` or ``last_timestamp``; the dry run counts only later bars
    as out of sample, even when the local feature file is older than the model's.
    """
    import pandas as pd

    if folder is None or not (folder / "features.json").is_file():
        return None
    try:
        data = json.loads((folder / "features.json").read_text())
        value = data.get("trained_until") or data.get("last_timestamp")
        return pd.to_datetime(value, utc=True) if value else None
    except (OSError, ValueError, TypeError, AttributeError):
        raise CheckInputError(f"{folder / 'features.json'} is unreadable; download the model again") from None


class LastMoveBaseline:
    """The fallback when no trained model exists: repeat the last ``horizon``-bar move.

    It is never a trained model: results made with it say ``trained: false`` and the gate
    refuses them.
    """

    trained = False
    label = "baseline: last move"

    def __init__(self, window: int = 2, horizon: int = 1) -> None:
        self.window = max(2, int(window))
        self.horizon = int(horizon)

    def probabilities_from_close(self, close: np.ndarray, ends: np.ndarray) -> np.ndarray:
        prev = close[np.maximum(ends - self.horizon, 0)]
        return np.where(close[ends] > prev, 0.55, 0.45)
