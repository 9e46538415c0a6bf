"""The downloaded models a runtime would trade with: which folder per symbol, what its
checkpoint says, the exact bytes (sha256) the gate pins, and the baseline used when
there is no trained model.

A models directory is an artifact root as `training.registry` lays it out::

    <models_dir>/models/<SYMBOL>/<UTC timestamp>/model.pt, config.json, ... sha256.txt
    <models_dir>/champions/<SYMBOL>.json     (optional) the folder trusted for SYMBOL

For each symbol the champion's folder is used when there is one, else the newest folder;
``roster.json`` has the last word when it and a pointer disagree (`training.champions`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from runtime_checks.errors import CheckInputError
from training.champions import trusted_folder
from training.registry import sha256_file

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,10}-[A-Z]{3,5}$")
REQUIRED_FILES = ("model.pt", "sha256.txt")
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
        raise CheckInputError(
            f"models directory {root} does not exist (download the models first, or pass --models DIR)"
        )
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
    # roster.json is the commit point of a champion change (`training.champions`): where it
    # speaks of the symbol and the pointer file disagrees (a crash between the two), it wins.
    try:
        spoke, said = trusted_folder(root, symbol)
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckInputError(f"{root / 'roster.json'} is unreadable; download the models again") from None
    if spoke:
        try:
            agrees = said is not None and json.loads(pointer.read_text()).get("model_dir") == said
        except (OSError, ValueError, AttributeError):
            agrees = False
        if not agrees:
            if said is None:
                folders = _folders(root / "models" / symbol)
                return folders[-1] if folders else None
            folder = (root / said).resolve()
            if root not in folder.parents or not folder.is_dir():
                raise CheckInputError(f"roster.json names {said} as the {symbol} champion, which is missing or "
                                      "outside the models dir; download the models again")  # fmt: skip
            return folder
    if pointer.is_file():
        try:
            rel = json.loads(pointer.read_text())["model_dir"]
        except (OSError, ValueError, KeyError, TypeError):
            raise CheckInputError(f"champion pointer {pointer} is unreadable; fix or delete it") from None
        folder = (root / rel).resolve()
        if root not in folder.parents:
            raise CheckInputError(f"champion pointer {pointer} points outside {root}")
        if not folder.is_dir():
            raise CheckInputError(
                f"champion pointer {pointer} names {rel}, which is missing; download the models again"
            )
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
            raise CheckInputError(
                f"{folder / 'sha256.txt'} names {name!r}, not a file of the folder; download the model again"
            )
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
    """What a saved model says about the features it reads."""

    symbol: str
    input_size: int
    feature_names: tuple[str, ...]
    feature_hash: str
    window: int
    horizon: int


def model_family(folder: Path | None) -> Any:
    """The family that saved ``folder`` (its config.json says; older folders are the lstm's):
    the only way the checks reach a model (`training.families`)."""
    from training.errors import TrainingError
    from training.families import get_family

    name = "lstm"
    config = Path(folder) / "config.json" if folder is not None else None
    if config is not None and config.is_file():
        try:
            name = str(json.loads(config.read_text()).get("family") or "lstm")
        except (OSError, ValueError, AttributeError):
            raise CheckInputError(f"{config} is unreadable; download the model again") from None
    try:
        return get_family(name)
    except TrainingError as exc:
        raise CheckInputError(f"{folder} holds a model of family {name!r} this console does not know ({exc})") from None


def read_checkpoint(path: Path) -> tuple[CheckpointInfo, Any]:
    """The saved model's feature contract and the model itself, loaded by its family (weights
    only: nothing in the file runs); a torn, foreign or incomplete file is bad input."""
    from training.errors import TrainingError

    folder = Path(path).parent
    if not Path(path).is_file():
        raise CheckInputError(f"no model file at {path}; download the models again")
    try:
        model = model_family(folder).load(folder)
    except TrainingError as exc:
        raise CheckInputError(f"{exc}; download it again" if "retrain" not in str(exc) else str(exc)) from None
    info = CheckpointInfo(
        str(model.symbol),
        int(model.input_size),
        tuple(model.feature_names),
        str(model.feature_hash),
        int(model.window),
        int(model.horizon),
    )
    return info, model


def load_predictor(folder: Path, symbol: str) -> Any:
    """The trained model in ``folder``, ready to predict (its family's predictor); refuses a
    model trained on another symbol."""
    from training.errors import TrainingError

    info, _ = read_checkpoint(folder / "model.pt")
    if info.symbol != symbol:
        raise CheckInputError(
            f"{folder / 'model.pt'} was trained on {info.symbol}, not {symbol}; download the right model"
        )
    try:
        return model_family(folder).predictor(folder)
    except TrainingError as exc:
        raise CheckInputError(str(exc)) from None


def baseline_predictor(folder: Path | None) -> Any:
    """The fallback when there is no trained model: the family's baseline (never passes the gate)."""
    return model_family(folder).baseline(folder)


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


def judged_until(folder: Path | None) -> Any:
    """The last bar of the model's test part (the bars that decided its promotion), when its
    features.json says so (else None). The dry run and the gate judge only later bars."""
    import pandas as pd

    if folder is None or not (folder / "features.json").is_file():
        return None
    try:
        value = json.loads((folder / "features.json").read_text()).get("judged_until")
        return pd.to_datetime(value, utc=True) if value else None
    except (OSError, ValueError, TypeError, AttributeError):
        raise CheckInputError(f"{folder / 'features.json'} is unreadable; download the model again") from None


def model_timeframe(models_dir: Path, symbol: str) -> str:
    """The candles the runtime's model for ``symbol`` was trained on (its features.json's
    ``timeframe``): "1m" for a model that names none or when there is no model."""
    folder = model_folder(models_dir, symbol)
    if folder is None:
        return "1m"
    try:
        value = json.loads((folder / "features.json").read_text()).get("timeframe") or "1m"
    except (OSError, ValueError, AttributeError):
        return "1m"
    from training.data.market import TIMEFRAMES

    if value not in TIMEFRAMES:
        raise CheckInputError(
            f"{folder / 'features.json'} names an unknown timeframe {value!r}; download the model again"
        )
    return str(value)
