"""What one AWS Batch job is given: its shards, its work's fingerprint, where its inputs may be.

A job is reused for a submission only when its fingerprint (task, units, array size, params)
matches, and lives under a prefix named by it (`remote.backends.batch`); an ``s3://`` input
is referenced only in the backend's own bucket.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from remote.backends.base import JobSpec
from remote.errors import StorageError

__all__ = ["in_bucket", "shards", "work_fingerprint"]


def in_bucket(where: Path | str, bucket: str) -> bool:
    """An input given as an ``s3://`` URL is already in the bucket: referenced, not uploaded.
    Only this backend's bucket: the job role reads that one, and nothing else is ours to hand
    a child (`StorageError` says which bucket it named)."""
    if not (isinstance(where, str) and where.startswith("s3://")):
        return False
    named = where[len("s3://") :].split("/", 1)[0]
    if named != bucket:
        raise StorageError(
            f"input {where[:120]} is in bucket {named!r}, not the batch backend's {bucket!r}; "
            "copy it there or give a local folder"
        )
    return True


def work_fingerprint(spec: JobSpec) -> str:
    """What a job was given, in a tag's 16 characters: its task, units, array size and params
    (the input checksums and the encoder's settings among them). A job is reused for a spec only
    when this matches, so a reused job's results are for this work. A fetch's ``window`` is left
    out: it is recomputed from the clock on every attempt, and a resumed fetch must find its job."""
    params = {k: v for k, v in spec.params.items() if k != "window"}
    work = {"units": list(spec.units), "size": spec.array_size, "params": params}
    return hashlib.sha256(json.dumps(work, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shards(units: tuple[str, ...], size: int) -> list[list[str]]:
    """Units dealt round-robin over ``size`` children (a child may get none when units are few)."""
    out: list[list[str]] = [[] for _ in range(size)]
    for i, unit in enumerate(units):
        out[i % size].append(unit)
    return out
