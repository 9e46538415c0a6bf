"""The investment system's models in the bucket: publish a version behind its gate, and the
runtime loader that falls back to baselines (the seed's Lambda integration).

Both work on the bucket's ``models/`` folder as a store (``open_store("s3://BUCKET/models")``
or a `remote.storage.LocalArtifactStore` over a directory): keys ``latest.json`` and
``<family>_v<stamp>.zip`` there are ``models/latest.json`` and ``models/<family>_v<stamp>.zip``
in the bucket, as the seed lays them out.

**Publish** (`publish`): both model files go up first, each with its sha256; then, only when
both models passed their gate, ``latest.json`` last. A version that failed stays in the
bucket for inspection, and ``latest.json`` keeps pointing at the previous one; the result
says why.

**Load** (`load_models`), for the operator's own service: read ``latest.json``, download each
model, check its sha256 against the one ``latest.json`` records, unpack only the model's own
file names and load it with the family's `load` (plain arrays and JSON: nothing in the files
runs). Each model falls back on its own to the family's documented baseline (the regime rule,
the relative-strength health score) when there is no ``latest.json``, torch is not installed,
the file is missing or differs from its hash, or loading fails; `RuntimeModels.reasons` says
which and why. A runtime never stops for want of a model.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from remote.errors import ChecksumMismatch
from remote.storage import sha256_of
from training.families import get_family
from training.families.base import Predictor
from training.families.investment.package import (
    check_latest,
    latest_record,
    pack_model,
    unpack_model,
    version_stamp,
)

FAMILIES = ("regime", "health")
LATEST = "latest.json"
MODELS_FOLDER = "models/"


class ModelsStore(Protocol):
    def put_bytes(self, key: str, data: bytes) -> str: ...

    def get_bytes(self, key: str) -> bytes | None: ...

    def put_file(self, key: str, path: Path, sha256: str | None = None) -> str: ...

    def get_file(self, key: str, dest: Path) -> str | None: ...


class Judged(Protocol):
    """A model's verdict: `training.families.evaluation.Verdict`, or one read back from its
    ``verdict.json`` (`RecordedVerdict`)."""

    @property
    def reasons(self) -> tuple[str, ...]: ...

    def lines(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class RecordedVerdict:
    """The verdict a trained model folder records (``verdict.json``: ``passed`` and its lines)."""

    passed: bool
    recorded: tuple[str, ...]

    @classmethod
    def read(cls, folder: Path) -> "RecordedVerdict":
        data = json.loads((Path(folder) / "verdict.json").read_text())
        return cls(bool(data.get("passed")), tuple(str(line) for line in data.get("lines") or ()))

    @property
    def reasons(self) -> tuple[str, ...]:
        if self.passed:
            return ()
        return tuple(line for line in self.recorded if not line.endswith(" - pass")) or ("the model did not pass",)

    def lines(self) -> tuple[str, ...]:
        return self.recorded


@dataclass(frozen=True)
class Published:
    version: str
    paths: Mapping[str, str]
    promoted: bool
    reasons: tuple[str, ...]
    """Why ``latest.json`` did not move (empty when it did)."""


def publish(
    store: ModelsStore,
    folders: Mapping[str, Path],
    verdicts: Mapping[str, Judged],
    metrics: Mapping[str, Mapping[str, Any]],
    *,
    version: str | None = None,
) -> Published:
    """Upload both models of ``folders`` (family -> saved folder) as a new version; move
    ``latest.json`` to it only when both ``verdicts`` passed."""
    version = version or version_stamp()
    paths, digests, types = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            name = f"{family}_v{version}.zip"
            packed = pack_model(Path(folders[family]), Path(tmp) / name)
            digests[family] = store.put_file(name, packed, sha256_of(packed))
            paths[family] = MODELS_FOLDER + name
            types[family] = str(json.loads((Path(folders[family]) / "config.json").read_text())["model_type"])
    reasons = tuple(f"{family}: {line}" for family in FAMILIES for line in verdicts[family].reasons)
    if reasons:
        return Published(version, paths, False, reasons)
    lines = [f"{family}: {line}" for family in FAMILIES for line in verdicts[family].lines()]
    record = latest_record(version, paths, digests, metrics, types, lines)
    store.put_bytes(LATEST, json.dumps(record, indent=2, sort_keys=True).encode())
    return Published(version, paths, True, ())


@dataclass
class RuntimeModels:
    """What a runtime predicts with: one predictor per family, trained or baseline, and why."""

    regime: Predictor
    health: Predictor
    version: str | None = None
    reasons: dict[str, str] = field(default_factory=dict)
    """Family -> why its baseline stands in (absent when the trained model loaded)."""

    @property
    def source(self) -> dict[str, str]:
        return {f: ("trained" if getattr(self, f).trained else "baseline") for f in FAMILIES}

    def lines(self) -> list[str]:
        out = [f"latest.json version: {self.version or 'none'}"]
        for family in FAMILIES:
            predictor = getattr(self, family)
            why = f" ({self.reasons[family]})" if family in self.reasons else ""
            out.append(f"{family}: {predictor.name}{why}")
        return out


def load_models(store: ModelsStore, cache: Path) -> RuntimeModels:
    """The models ``latest.json`` names, verified and loaded; a baseline for each that cannot be."""
    baselines: dict[str, Predictor] = {f: get_family(f).baseline(None) for f in FAMILIES}

    def fallback(reason: str, version: str | None = None) -> RuntimeModels:
        return RuntimeModels(baselines["regime"], baselines["health"], version, reasons={f: reason for f in FAMILIES})

    try:
        raw = store.get_bytes(LATEST)
    except Exception as exc:  # noqa: BLE001 - an unreadable pointer is a reason to fall back, named
        return fallback(f"latest.json unreadable ({exc})")
    if raw is None:
        return fallback("no trained model (no models/latest.json)")
    try:
        record = check_latest(json.loads(raw))
    except Exception as exc:  # noqa: BLE001 - a malformed pointer is a reason to fall back, named
        return fallback(f"latest.json is malformed ({exc})")
    try:
        import torch  # noqa: F401 - only whether it is there
    except ImportError:
        return fallback("torch is not installed", record["version"])
    loaded: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for family in FAMILIES:
        try:
            loaded[family] = _load_one(store, record, family, Path(cache))
        except Exception as exc:  # noqa: BLE001 - whatever failed, this family falls back and says why
            loaded[family], reasons[family] = baselines[family], str(exc).splitlines()[0]
    return RuntimeModels(loaded["regime"], loaded["health"], record["version"], reasons)


def _load_one(store: ModelsStore, record: Mapping[str, Any], family: str, cache: Path) -> Predictor:
    path = str(record[f"{family}_model"])
    if not path.startswith(MODELS_FOLDER) or "/" in path[len(MODELS_FOLDER) :]:
        raise ValueError(f"{family} model path {path!r} is not a file in models/")
    key = path[len(MODELS_FOLDER) :]
    expected = dict(record["sha256"]).get(path)
    target = cache / record["version"] / key
    target.parent.mkdir(parents=True, exist_ok=True)
    tampered = f"{path} does not match the sha256 latest.json records (tampered or replaced)"
    try:
        store.get_file(key, target)
    except ChecksumMismatch:
        raise ValueError(tampered) from None
    except Exception as exc:  # noqa: BLE001 - missing or unreadable object
        raise ValueError(f"{path} could not be downloaded ({type(exc).__name__})") from None
    if not expected or sha256_of(target) != expected:
        raise ValueError(tampered)
    folder = unpack_model(target, target.with_suffix(""))
    return get_family(family).predictor(folder)
