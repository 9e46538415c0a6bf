"""The ``batch-child`` mode: one child of an AWS Batch array job trains its shard of units.

The console writes a shard manifest to S3 and submits one array job; every child runs
``python -m training.container batch-child`` with::

    RC_BATCH_MANIFEST   s3://bucket/key of the manifest (JSON, below)
    RC_ARRAY_SIZE       the array size the console submitted (the manifest must agree)
    RC_JOB_NAME, RC_JOB_TOKEN   the guard: the manifest carries sha256("<job name>:<token>")
    AWS_BATCH_JOB_ARRAY_INDEX   the child's shard (Batch sets it; a ``<id>:<n>`` AWS_BATCH_JOB_ID
                                gives it too, and a plain job is shard 0)

Manifest: ``{"job_name", "rc_job_token_sha256", "family", "params", "costs", "seed",
"array_size", "shards": [[unit, ...], ...], "inputs": {channel: {"prefix", "per_unit",
"sha256"?}}, "out": "s3://bucket/prefix/"}``. Per-unit channels are read from
``<prefix><UNIT>.parquet`` (a file or a folder of parts), shared ones from ``<prefix>``.
A per-unit channel with ``sha256`` (unit -> `content_sha256` of its file, as whoever wrote
it recorded) is checked after the download: a unit whose file differs, or that the map
does not name, fails with the reason and is never trained.

Each unit trains through `training.families.run.train_unit` (the same driver as every
other entry point) and its model folder is uploaded as soon as it is published, with
``sha256.txt`` last; ``results/<index>.json`` (written last) lists what the child
finished, so a child killed mid-upload leaves nothing the console will take.
``events/<index>.jsonl`` carries its progress lines. A unit that fails (a coin delisted
mid-run, too little history) is reported and the others go on.

Exit codes: 0 the shard ran (failed units are in the results), 1 the child crashed,
2 bad input (manifest, array size, index), 3 refused by the guard.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from training.errors import TrainingError, TrainingInputError


class BadManifest(TrainingInputError):
    """The shard manifest, the array size or the child's index do not agree."""


def content_sha256(path: Path) -> str:
    """``sha256:<hex>`` of a file; of a folder, over its files' relative names and contents in
    name order (a feature file may be a folder of parts), so the same bytes give the same sum
    wherever they were written."""
    if path.is_file():
        return "sha256:" + _file_sha256(path).hexdigest()
    digest = hashlib.sha256()
    for part in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else ():
        digest.update(part.relative_to(path).as_posix().encode() + b"\0" + _file_sha256(part).digest())
    return "sha256:" + digest.hexdigest()


def _file_sha256(path: Path) -> Any:
    """A file's sha256, read in chunks (a year of one-minute features is large for a child)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256")


def split_s3(url: str) -> tuple[str, str]:
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise BadManifest(f"{url!r} is not an s3://bucket/key URL")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


def child_index(environ: Mapping[str, str]) -> int:
    """The shard of this child: Batch's array index, else the ``:<n>`` of the job id, else 0."""
    raw = environ.get("AWS_BATCH_JOB_ARRAY_INDEX")
    if raw is None:
        job_id = environ.get("AWS_BATCH_JOB_ID", "")
        raw = job_id.rpartition(":")[2] if ":" in job_id else "0"
    try:
        return int(raw)
    except ValueError:
        raise BadManifest(f"array index {raw!r} is not a whole number") from None


def check_guard(environ: Mapping[str, str], manifest: Mapping[str, Any]) -> None:
    """Train only inside the job the console submitted (`training.container.check_job_token`)."""
    from training.container import check_job_token

    check_job_token(
        environ,
        {
            "rc_job_name": str(manifest.get("job_name") or ""),
            "rc_job_token_sha256": str(manifest.get("rc_job_token_sha256") or ""),
        },
    )


def shard_of(manifest: Mapping[str, Any], environ: Mapping[str, str], index: int) -> list[str]:
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(isinstance(s, list) for s in shards):
        raise BadManifest("the manifest has no list of shards")
    submitted = environ.get("RC_ARRAY_SIZE", str(len(shards)))
    if str(len(shards)) != submitted or int(manifest.get("array_size", len(shards))) != len(shards):
        raise BadManifest(
            f"the shard manifest lists {len(shards)} shards but the array job has {submitted} children; "
            "resubmit so they match"
        )
    if not 0 <= index < len(shards):
        raise BadManifest(f"child index {index} is outside the manifest's {len(shards)} shards")
    return [str(u) for u in shards[index]]


class S3Place:
    """Where the child reads and writes: one bucket, through boto3 (endpoint from AWS_ENDPOINT_URL)."""

    def __init__(self) -> None:
        import boto3

        self.s3 = boto3.client("s3")

    def _body(self, url: str) -> bytes | None:
        """The bytes of the object at ``url``; None when there is none."""
        bucket, key = split_s3(url)
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        except Exception as exc:  # noqa: BLE001 - botocore's errors, named in one line
            raise BadManifest(f"cannot read {url} ({type(exc).__name__})") from None

    def get_json(self, url: str) -> Any:
        body = self._body(url)
        if body is None:
            raise BadManifest(f"cannot read {url} (NoSuchKey)")
        try:
            return json.loads(body)
        except ValueError:
            raise BadManifest(f"{url} is not JSON") from None

    def get_json_or_none(self, url: str) -> Any:
        """The JSON at ``url``; None when there is no object there or it is not JSON (a torn write)."""
        body = self._body(url)
        try:
            return None if body is None else json.loads(body)
        except ValueError:
            return None

    def download(self, url: str, dest: Path) -> bool:
        """The object at ``url`` into the file ``dest``; False when there is none."""
        body = self._body(url)
        if body is None:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(body)
        return True

    def delete(self, url: str) -> None:
        bucket, key = split_s3(url)
        self.s3.delete_object(Bucket=bucket, Key=key)

    def put_bytes(self, url: str, data: bytes) -> None:
        bucket, key = split_s3(url)
        self.s3.put_object(Bucket=bucket, Key=key, Body=data)

    def download_prefix(self, url: str, dest: Path) -> int:
        """Every object under ``url`` (a key or a folder) into ``dest``; how many."""
        bucket, prefix = split_s3(url)
        count = 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents") or ():
                key = item["Key"]
                rel = key[len(prefix) :].lstrip("/")
                target = dest / rel if rel else dest
                target.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(bucket, key, str(target))
                count += 1
        return count

    def upload_folder(self, folder: Path, url: str, *, last: str = "sha256.txt") -> None:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == last)  # the manifest of hashes goes up last
        bucket, prefix = split_s3(url)
        for path in files:
            self.s3.upload_file(str(path), bucket, prefix + path.relative_to(folder).as_posix())


def guarded_job(environ: Mapping[str, str], url: str, what: str) -> tuple[S3Place, dict[str, Any], int]:
    """The job's JSON object at ``url`` (``what`` names it in the error when it is not one), let
    in by the guard before any data is read, with the place it came from and this child's index."""
    place = S3Place()
    job = place.get_json(url)
    if not isinstance(job, dict):
        raise BadManifest(f"{what} not a JSON object")
    check_guard(environ, job)
    return place, job, child_index(environ)


def main(argv: Sequence[str] | None = None) -> int:
    return run_child("train", run_shard)


def run_child(task: str, run: Callable[[S3Place, Mapping[str, Any], int, list[str], Path], None]) -> int:
    """A Batch child's entry point for manifests of ``task`` (a manifest without one is training's):
    the guard, this child's shard, then ``run`` on it. Bad input exits 2 and the guard 3, with one
    line and no traceback."""
    environ = os.environ
    try:
        place, manifest, index = guarded_job(environ, environ.get("RC_BATCH_MANIFEST", ""), "the manifest is")
        found = manifest.get("task", "train")
        if found != task:
            raise BadManifest(f"the manifest is a {found!r} job's, not a {task!r} one; resubmit the job")
        units = shard_of(manifest, environ, index)
        run(place, manifest, index, units, Path.cwd())
    except TrainingError as exc:
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    return 0


class Events:
    """The child's progress lines: printed (its log) and mirrored to ``events/<index>.jsonl``."""

    def __init__(self, place: S3Place, url: str, index: int) -> None:
        self.place, self.url, self.index = place, url, index
        self.lines: list[dict[str, Any]] = []

    def __call__(self, kind: str, unit: str = "", **data: Any) -> None:
        self.lines.append({"kind": kind, "unit": unit, "index": self.index, "t": round(time.time(), 3), **data})
        print(json.dumps(self.lines[-1]), flush=True)
        self.place.put_bytes(self.url, "\n".join(json.dumps(e) for e in self.lines).encode())


class Throttled:
    """A fit's progress, at most one line every ``every_s`` (the start always); `flush` the last held."""

    def __init__(self, events: Events, unit: str, every_s: float = 2.0) -> None:
        self.events, self.unit, self.every_s = events, unit, every_s
        self.last, self.held = 0.0, None

    def __call__(self, p: Any) -> None:
        self.held = p
        if p.kind == "start" or time.monotonic() - self.last > self.every_s:
            self.flush()

    def flush(self) -> None:
        p, self.held = self.held, None
        if p is not None:
            self.last = time.monotonic()
            self.events(p.kind, self.unit, step=p.step, steps=p.steps)


def run_shard(place: S3Place, manifest: Mapping[str, Any], index: int, units: list[str], here: Path) -> None:
    out_url = str(manifest["out"])
    inputs = dict(manifest.get("inputs") or {})
    event = Events(place, f"{out_url}events/{index}.jsonl", index)
    shared: dict[str, Path] = {}
    for channel, where in inputs.items():
        if not where.get("per_unit", True):
            shared[channel] = here / "inputs" / channel
            place.download_prefix(str(where["prefix"]), shared[channel])
    event("start", units=units)
    rows = []
    for unit in units:
        began = time.monotonic()
        try:
            row = train_one(place, manifest, unit, shared, here, Throttled(event, unit))
        except TrainingError as exc:
            row = {"unit": unit, "state": "failed", "why": str(exc)}
        row["seconds"] = round(time.monotonic() - began, 3)
        rows.append(row)
        event("done", unit, state=row["state"], passed=row.get("passed", False), why=row.get("why", ""))
    roster = here / "out" / "roster.json"
    if roster.is_file():
        place.put_bytes(f"{out_url}rosters/{index}.json", roster.read_bytes())
    results = {"index": index, "units": rows, "attempt": os.environ.get("AWS_BATCH_JOB_ATTEMPT", "1")}
    place.put_bytes(f"{out_url}results/{index}.json", json.dumps(results, indent=1).encode())


def _check_sha256(unit: str, channel: str, where: Mapping[str, Any], path: Path) -> None:
    """Refuse ``unit``'s downloaded ``channel`` input unless it is what the manifest's checksums say."""
    sums = where.get("sha256")
    if sums is None:
        return
    expected = sums.get(unit) if isinstance(sums, dict) else None
    if not expected:
        raise TrainingInputError(f"{unit}: the manifest lists no sha256 for its {channel} input; not trained")
    if content_sha256(path) != expected:
        raise TrainingInputError(
            f"{unit}: its {channel} input under {where['prefix']} is not the file that was recorded "
            "(sha256 differs); not trained"
        )


def train_one(
    place: S3Place, manifest: Mapping[str, Any], unit: str, shared: dict[str, Path], here: Path, progress: Throttled
) -> dict[str, Any]:
    """Fetch one unit's inputs, train it through the shared driver, upload its folder."""
    from training.families.base import FitJob
    from training.families.run import train_unit

    local = dict(shared)
    for channel, where in dict(manifest.get("inputs") or {}).items():
        if where.get("per_unit", True):
            local[channel] = here / "inputs" / channel / f"{unit}.parquet"
            if not place.download_prefix(f"{where['prefix']}{unit}.parquet", local[channel]):
                raise TrainingInputError(f"{unit}: no {channel} input under {where['prefix']}")
            _check_sha256(unit, channel, where, local[channel])
    job = FitJob(
        family=str(manifest["family"]),
        unit=unit,
        inputs=local,
        work_dir=here / "work" / unit,
        params=dict(manifest.get("params") or {}),
        costs=dict(manifest.get("costs") or {}),
        seed=int(manifest.get("seed") or 0),
    )
    pin = ""  # what the champion pins: the shared encoder's hash, when the job has one
    if "encoder" in shared and (shared["encoder"] / "encoder.json").is_file():
        pin = str(json.loads((shared["encoder"] / "encoder.json").read_text()).get("hash", ""))
    outcome = train_unit(job, here / "out", on_progress=progress, pin=pin)
    progress.flush()  # the last step, if throttled away: where the fit ended
    rel = outcome.published.folder.relative_to(here / "out").as_posix()
    place.upload_folder(outcome.published.folder, f"{manifest['out']}{rel}/")
    pointer = here / "out" / "champions" / f"{unit}.json"
    if outcome.verdict.passed and pointer.is_file():
        place.put_bytes(f"{manifest['out']}champions/{unit}.json", pointer.read_bytes())
    return {
        "unit": unit,
        "state": "succeeded",
        "model_dir": rel,
        "timestamp": outcome.published.timestamp,
        "passed": outcome.verdict.passed,
        "reasons": list(outcome.verdict.reasons),
    }
