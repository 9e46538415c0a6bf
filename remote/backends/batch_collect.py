"""Gather an array job's finished units into one artifact root, every file checked.

Each child lists what it finished in ``results/<index>.json`` (written after its uploads);
a unit's folder is fetched through its ``sha256.txt`` and each file's sha256 must match,
so a child killed mid-upload (no results, or a file that differs) contributes nothing
half-written. Each child promotes its own units (``champions/<UNIT>.json``, one writer per
unit) and uploads its roster as ``rosters/<index>.json``; the roster is merged here once,
rather than by children racing on one file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

from remote.errors import StorageError

Fetch = Callable[[str], "bytes | None"]


def gather(get: Fetch, array_size: int, dest: Path) -> dict[str, Any]:
    """Fetch every finished unit into ``dest`` (models/, champions/, roster.json); the results read."""
    dest = Path(dest)
    roster: dict[str, Any] = {"symbols": {}, "updated_at": None}
    summary: dict[str, Any] = {"units": [], "missing_children": []}
    for index in range(array_size):
        raw = get(f"out/results/{index}.json")
        if raw is None:
            summary["missing_children"].append(index)
            continue
        for row in json.loads(raw)["units"]:
            summary["units"].append(row)
            if row.get("state") != "succeeded":
                continue
            fetch_folder(get, str(row["model_dir"]), dest)
            pointer = get(f"out/champions/{row['unit']}.json") if row.get("passed") else None
            if pointer is not None:
                (dest / "champions").mkdir(parents=True, exist_ok=True)
                (dest / "champions" / f"{row['unit']}.json").write_bytes(pointer)
        part = get(f"out/rosters/{index}.json")
        if part is not None:
            data = json.loads(part)
            roster["symbols"].update(data.get("symbols") or {})
            roster["updated_at"] = max(filter(None, [roster["updated_at"], data.get("updated_at")]), default=None)
    if not any(r.get("state") == "succeeded" for r in summary["units"]):
        raise StorageError("no unit of the job finished; nothing to collect")
    (dest / "roster.json").write_text(json.dumps(roster, indent=2, sort_keys=True) + "\n")
    (dest / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def fetch_folder(get: Fetch, rel: str, dest: Path) -> Path:
    """``rel`` (a model folder under the job's out/) into ``dest/rel``, whole or not at all."""
    manifest = get(f"out/{rel}/sha256.txt")
    if manifest is None:
        raise StorageError(f"{rel} has no sha256.txt: its upload did not finish")
    target = dest / rel
    staging = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for line in manifest.decode().splitlines():
        digest, _, name = line.partition("  ")
        if not name or "/" in name or name.startswith("."):
            raise StorageError(f"{rel}/sha256.txt names {name!r}, not a file of the folder")
        data = get(f"out/{rel}/{name}")
        if data is None or hashlib.sha256(data).hexdigest() != digest:
            shutil.rmtree(staging, ignore_errors=True)
            raise StorageError(f"{rel}/{name} is missing or differs from its sha256; the child's upload is damaged")
        (staging / name).write_bytes(data)
    (staging / "sha256.txt").write_bytes(manifest)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def gather_fetched(get: Fetch, array_size: int, units: list[str], dest: Path) -> dict[str, dict[str, Any]]:
    """A fetch job's results (`training.container.batch_fetch`): each coin's row, and for every
    coin fetched its encoder moments in ``dest/<COIN>.npz``, checked against the sha256 its child
    recorded (which must also have recorded its feature file's, for the heads' children to
    check). A coin no child reported (its child ended without results) is ``failed``; a row
    for a coin the job was not given is ignored, never named as a file."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = set(units)
    rows: dict[str, dict[str, Any]] = {}
    for index in range(array_size):
        raw = get(f"out/results/{index}.json")
        for row in json.loads(raw).get("units", []) if raw is not None else ():
            unit = str(row.get("unit", ""))
            if unit not in wanted:
                continue
            rows[unit] = dict(row)
            if row.get("state") == "succeeded":
                if not str((row.get("sha256") or {}).get("features", "")).startswith("sha256:"):
                    rows[unit] = {
                        **row,
                        "state": "failed",
                        "why": "its child recorded no checksum for its feature file",
                    }
                    continue
                data = get(f"out/moments/{unit}.npz")
                expected = str((row.get("sha256") or {}).get("moments", ""))
                if data is None or "sha256:" + hashlib.sha256(data).hexdigest() != expected:
                    rows[unit] = {**row, "state": "failed", "why": "its encoder moments are missing or damaged"}
                    continue
                (dest / f"{unit}.npz").write_bytes(data)
    for unit in units:
        rows.setdefault(unit, {"unit": unit, "state": "failed", "why": "its Batch child ended without results"})
    return {unit: rows[unit] for unit in units}
