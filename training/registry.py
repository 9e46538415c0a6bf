"""Trained-model artifacts and champions.

Layout under an artifact root::

    models/<SYMBOL>/<UTC timestamp>/   model.pt, config.json, metrics.json, features.json,
                                       training_log.json, sha256.txt (sha256sum format)
    champions/<SYMBOL>.json            the model folder currently trusted for SYMBOL
    roster.json                        every symbol: champion, latest model, gate verdict

A model folder is built under a hidden temp name and renamed into place when complete,
so a folder with a timestamp name is always whole; a crash leaves only a ``.tmp-*`` folder
that no reader lists. After-cost quality gates (`GateRules`, from the config's ``gates``
section) decide promotion: a model that fails is kept but not promoted, and its
``metrics.json`` and the roster say why.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from training.atomic import atomic_path
from training.errors import BadTrainingConfig

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,10}-[A-Z]{3,5}$")
ARTIFACT_FILES = ("model.pt", "config.json", "metrics.json", "features.json", "training_log.json")


UNIT_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def check_unit(unit: str) -> str:
    """A symbol like ``BTC-USD`` or a model name like ``regime``; refuses anything path-like."""
    if UNIT_NAME_RE.fullmatch(unit or ""):
        return unit
    return check_symbol(unit)


def check_symbol(symbol: str) -> str:
    """``symbol`` if it is a plain exchange pair like ``BTC-USD``; refuses anything path-like."""
    if not SYMBOL_RE.fullmatch(symbol or ""):
        raise BadTrainingConfig(f"invalid symbol {symbol!r}: expected something like BTC-USD")
    return symbol


@dataclass(frozen=True)
class GateRules:
    """After-cost quality gates a model must pass to become champion (None disables one)."""

    min_net_return: float | None = 0.0
    """Net return of the long/short rule on the test part, after costs, must exceed this."""
    min_trades: int | None = 30
    min_accuracy: float | None = None
    min_auc: float | None = None
    max_drawdown: float | None = None
    beat_baselines: bool = True
    """Net return after costs must beat both baselines' (majority, last move)."""

    @classmethod
    def from_config(cls, gates: Mapping[str, Any] | None) -> "GateRules":
        gates = dict(gates or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(gates) - known)
        if unknown:
            raise BadTrainingConfig(
                f"unknown quality gate(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**gates)

    def judge(self, metrics: Mapping[str, Any]) -> list[str]:
        """Why the model fails the gates: an empty list means it passes."""
        reasons = []
        model = metrics["model"]
        trade = model["after_cost"]
        if self.min_trades is not None and trade["trades"] < self.min_trades:
            reasons.append(f"{trade['trades']} test trades < {self.min_trades}")
        if self.min_net_return is not None and not trade["net_return"] > self.min_net_return:
            reasons.append(f"net return after costs {trade['net_return']:+.4f} <= {self.min_net_return:+.4f}")
        if self.min_accuracy is not None and not model["accuracy"] >= self.min_accuracy:
            reasons.append(f"accuracy {model['accuracy']:.3f} < {self.min_accuracy:.3f}")
        if self.min_auc is not None and not model["auc"] >= self.min_auc:
            reasons.append(f"AUC {model['auc']:.3f} < {self.min_auc:.3f}")
        if self.max_drawdown is not None and trade["max_drawdown"] > self.max_drawdown:
            reasons.append(f"max drawdown {trade['max_drawdown']:.4f} > {self.max_drawdown:.4f}")
        if self.beat_baselines:
            for name in ("majority", "last_move"):
                base = metrics["baselines"][name]["after_cost"]["net_return"]
                if not trade["net_return"] > base:
                    reasons.append(f"net return {trade['net_return']:+.4f} does not beat {name} baseline {base:+.4f}")
        return reasons


@dataclass(frozen=True)
class PublishedModel:
    """A complete model folder and the gates' verdict on it."""

    symbol: str
    folder: Path
    timestamp: str
    passed: bool
    reasons: tuple[str, ...]
    promoted: bool = False


def publish_model(
    root: Path,
    symbol: str,
    *,
    write_model: Any,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    features: Mapping[str, Any],
    training_log: Any,
    rules: GateRules,
    now: datetime | None = None,
) -> PublishedModel:
    """Write ``models/<SYMBOL>/<timestamp>/`` whole or not at all; the verdict goes into metrics.json.

    ``write_model(path)`` writes model.pt (the registry does not need torch itself).
    """
    reasons = rules.judge(metrics)
    gate = {"passed": not reasons, "reasons": reasons, "rules": asdict(rules)}

    def write(folder: Path) -> Sequence[str]:
        write_model(folder / "model.pt")
        _write_json(folder / "config.json", config)
        _write_json(folder / "metrics.json", {**metrics, "gates": gate})
        _write_json(folder / "features.json", features)
        _write_json(folder / "training_log.json", training_log)
        return ARTIFACT_FILES

    return publish_folder(root, symbol, write, passed=not reasons, reasons=reasons, now=now)


def publish_folder(
    root: Path,
    unit: str,
    write: Callable[[Path], Sequence[str]],
    *,
    passed: bool,
    reasons: Sequence[str],
    now: datetime | None = None,
) -> PublishedModel:
    """Write ``models/<UNIT>/<timestamp>/`` whole or not at all, with ``sha256.txt`` over its files.

    ``write(folder)`` writes the model's files into a hidden staging folder and returns
    their names; the folder is fsynced and renamed into place only when complete, so a
    folder with a timestamp name is always whole. ``unit`` is a symbol (BTC-USD) or a
    model name (``regime``).
    """
    check_unit(unit)
    root = Path(root)
    parent = root / "models" / unit
    parent.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{stamp}-", dir=parent))
    try:
        names = sorted(set(write(staging)) - {"sha256.txt"})
        (staging / "sha256.txt").write_text("".join(f"{sha256_file(staging / n)}  {n}\n" for n in names))
        _fsync_dir_files(staging)
        folder = _rename_into_place(staging, parent, stamp)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return PublishedModel(unit, folder, folder.name, bool(passed), tuple(reasons))


def promote_if_passed(root: Path, published: PublishedModel, *, feature_hash: str) -> PublishedModel:
    """Make a passing model the champion and record every verdict in roster.json (under a lock)."""
    root = Path(root)
    rel = published.folder.relative_to(root).as_posix()
    with registry_lock(root):
        if published.passed:
            write_json_atomic(
                root / "champions" / f"{published.symbol}.json",
                {
                    "symbol": published.symbol,
                    "model_dir": rel,
                    "timestamp": published.timestamp,
                    "feature_hash": feature_hash,
                    "model_sha256": sha256_file(published.folder / "model.pt")
                    if (published.folder / "model.pt").is_file()
                    else None,
                    "manifest_sha256": sha256_file(published.folder / "sha256.txt"),
                    "promoted_at": utc_now_iso(),
                },
            )
        roster = read_roster(root)
        entry = roster["symbols"].get(published.symbol, {})
        entry.update(
            {
                "latest": rel,
                "latest_passed": published.passed,
                "latest_reasons": list(published.reasons),
                "champion": rel if published.passed else entry.get("champion"),
            }
        )
        roster["symbols"][published.symbol] = entry
        roster["updated_at"] = utc_now_iso()
        write_json_atomic(root / "roster.json", roster)
    return PublishedModel(**{**asdict(published), "promoted": published.passed})


def read_roster(root: Path) -> dict[str, Any]:
    """roster.json, or an empty roster when there is none yet."""
    path = Path(root) / "roster.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"symbols": {}, "updated_at": None}
    if not isinstance(data, dict) or not isinstance(data.get("symbols"), dict):
        return {"symbols": {}, "updated_at": None}  # a roster of another shape names no champion
    return data


def champion(root: Path, symbol: str) -> dict[str, Any] | None:
    """The champion pointer for ``symbol``, or None when no model has passed its gates."""
    path = Path(root) / "champions" / f"{check_unit(symbol)}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def list_models(root: Path, symbol: str) -> list[Path]:
    """Complete model folders for ``symbol``, oldest first (temp folders are never listed)."""
    parent = Path(root) / "models" / check_unit(symbol)
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))


def verify_folder(folder: Path) -> list[str]:
    """Files in a model folder whose sha256 differs from sha256.txt (empty list: intact)."""
    bad = []
    for line in (Path(folder) / "sha256.txt").read_text().splitlines():
        digest, name = line.split("  ", 1)
        target = Path(folder) / name
        if not target.is_file() or sha256_file(target) != digest:
            bad.append(name)
    return bad


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside ``path``, fsync, rename: readers see old or new, never half."""
    text = json.dumps(finite_json(data), indent=2, sort_keys=True, default=str, allow_nan=False)
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(finite_json(data), indent=2, sort_keys=True, default=str, allow_nan=False))


def finite_json(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, so the JSON is strict (no ``NaN``)."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return finite_json(value.item())
        except (TypeError, ValueError):
            return str(value)
    return value


def _fsync_dir_files(folder: Path) -> None:
    for item in sorted(folder.rglob("*")):
        if not item.is_file():
            continue
        with open(item, "rb") as fh:
            os.fsync(fh.fileno())


def _rename_into_place(staging: Path, parent: Path, stamp: str) -> Path:
    # Two models of one symbol finished in the same second get -2, -3, ... rather than clobbering.
    for n in range(1, 1000):
        target = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            os.rename(staging, target)  # fails if target exists and is non-empty
            return target
        except OSError:
            if not target.exists():
                raise
    raise FileExistsError(f"too many models for {parent.name} at {stamp}")


@contextmanager
def registry_lock(root: Path) -> Iterator[None]:
    """The artifact root's lock: champions and roster change only under it."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".registry.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def utc_now_iso() -> str:
    """Now, UTC, ISO 8601 to the second with a ``Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
