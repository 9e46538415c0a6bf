"""The model versions of one symbol in the artifact store (``console train cloud-list``).

A version holds ``models/<SYMBOL>/<stamp>/`` folders; each is one row, with its family and
whether it passed, read from the folder's ``verdict.json`` (its sha256 checked against the
version's manifest).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from remote.errors import ChecksumMismatch


def model_versions(store: Any, symbol: str, family: str | None = None) -> list[dict[str, Any]]:
    """One row per model folder of ``symbol``, newest version first; ``family`` filters."""
    rows = []
    for record in reversed(store.list_versions()):
        folders = sorted({"/".join(rel.split("/")[:3]) for rel in record.files if rel.startswith(f"models/{symbol}/")})
        for folder in folders:
            verdict = _verdict(store, record, f"{folder}/verdict.json")
            if family and verdict.get("family") != family:
                continue
            rows.append(
                {
                    "version": record.version,
                    "model": folder,
                    "family": verdict.get("family"),
                    "passed": bool(verdict.get("passed")),
                    "run_id": record.tags.run_id,
                    "trained_date": record.tags.trained_date,
                    "gpu": record.tags.gpu,
                }
            )
    return rows


def _verdict(store: Any, record: Any, rel: str) -> dict[str, Any]:
    if rel not in record.files:
        return {}
    raw = store._get_bytes(f"models/{record.version}/{rel}")  # one object of the version, not a record
    if raw is None:
        return {}
    if hashlib.sha256(raw).hexdigest() != record.files[rel][1]:
        raise ChecksumMismatch(f"{rel} of version {record.version} differs from its manifest")
    data = json.loads(raw)
    return data if isinstance(data, dict) else {}
