"""One model as one file, and the seed's ``latest.json`` record.

A saved ``regime`` or ``health`` model is a folder (plain arrays and JSON, `save`); for the
bucket it travels as one zip, ``models/<family>_v<stamp>.zip``. Unpacking takes only the
family's own file names (no paths, no links, nothing else), so a crafted archive can
neither write outside its folder nor bring anything that runs; the folder is then read by
the family's own `load` (which never executes anything from the files either).

``latest.json`` (`latest_record`) is the seed's format plus what the runtime checks::

    {"version", "timestamp", "regime_model", "health_model",
     "regime_metrics": {"test_accuracy", "test_f1_macro", "model_type"},
     "health_metrics": {"test_recon_mse", "test_health_correlation", "model_type"},
     "sha256": {"<model path>": "<hex>"}, "gate": ["<one line per rule>"]}
"""

from __future__ import annotations

import secrets
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from training.errors import CheckpointMismatch

MODEL_FILES = ("weights.npz", "config.json", "metrics.json", "training_log.json")
MAX_MEMBER_BYTES = 256 << 20
REGIME_METRICS = ("test_accuracy", "test_f1_macro")
HEALTH_METRICS = ("test_recon_mse", "test_health_correlation")


def version_stamp(now: datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-xxxx``: sortable, and two runs in one second still differ."""
    now = now or datetime.now(timezone.utc)
    return f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def pack_model(folder: Path, dest: Path) -> Path:
    """Zip the model files of ``folder`` into ``dest`` (atomically)."""
    from training.atomic import atomic_path

    folder, dest = Path(folder), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in MODEL_FILES:
                if (folder / name).is_file():
                    archive.write(folder / name, arcname=name)
    return dest


def unpack_model(archive_path: Path, dest: Path) -> Path:
    """The model files of a zip written by `pack_model`, into ``dest``; anything else refused."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = archive.infolist()
            odd = [m.filename for m in members if m.filename not in MODEL_FILES or m.is_dir()]
            if odd:
                raise CheckpointMismatch(f"{archive_path} holds unexpected entries ({', '.join(odd[:3])})")
            for member in members:
                if member.file_size > MAX_MEMBER_BYTES:
                    raise CheckpointMismatch(f"{archive_path}: {member.filename} is implausibly large")
                (dest / member.filename).write_bytes(archive.read(member))
    except zipfile.BadZipFile:
        raise CheckpointMismatch(f"{archive_path} is not a model archive") from None
    return dest


def latest_record(
    version: str,
    paths: Mapping[str, str],
    digests: Mapping[str, str],
    metrics: Mapping[str, Mapping[str, Any]],
    model_types: Mapping[str, str],
    gate_lines: Sequence[str],
    now: datetime | None = None,
) -> dict[str, Any]:
    """The seed's ``latest.json`` for a version whose two models passed their gate."""
    now = now or datetime.now(timezone.utc)
    return {
        "version": version,
        "timestamp": now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "regime_model": paths["regime"],
        "health_model": paths["health"],
        "regime_metrics": {
            **{k: metrics["regime"].get(k) for k in REGIME_METRICS},
            "model_type": model_types["regime"],
        },
        "health_metrics": {
            **{k: metrics["health"].get(k) for k in HEALTH_METRICS},
            "model_type": model_types["health"],
        },
        "sha256": {paths[f]: digests[f] for f in ("regime", "health")},
        "gate": list(gate_lines),
    }


def check_latest(record: Any) -> dict[str, Any]:
    """A ``latest.json`` as read back, or a refusal naming what is missing."""
    if not isinstance(record, dict):
        raise CheckpointMismatch("latest.json is not a JSON object")
    missing = [k for k in ("version", "regime_model", "health_model", "sha256") if k not in record]
    if missing:
        raise CheckpointMismatch(f"latest.json lacks {', '.join(missing)}")
    return record
