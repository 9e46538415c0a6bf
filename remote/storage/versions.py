"""The artifact store: versioned model sets on S3 (or a local directory for tests).

Layout under the store's prefix::

    models/<version>/<relative path>       every file of one uploaded set
    models/<version>/MANIFEST.json         relative path -> size, sha256; and the tags
    models/latest.json                     pointer to the newest complete version

``<version>`` is ``<UTC timestamp>-<run id>`` (e.g. ``20261123T110455Z-run-42``). Files go
up first, the manifest next, and ``latest.json`` last, so a reader that follows the
pointer never finds half a version; a version without a manifest is what a killed upload
left, and `VersionedStore.remove_partial_versions` deletes a run's own before it uploads
again. Each object carries its sha256 in its metadata
(``x-amz-meta-sha256``) and the tags ``trained_date``, ``gpu`` and ``run_id``; big files
go up in multipart. A download checks every file's sha256 against the manifest and the
object's metadata, refuses any path that would land outside the target directory
(``..``, absolute, through a symlink), assembles the version under a temporary name and
renames it into place, so a partial download is never presented as complete.

Besides versions, the store keeps small records of its own (the pre-live gate's, under
``gates/``): `put_bytes` / `get_bytes` write and read one object whole, with its sha256 in
its metadata, so a reader sees the old bytes or the new ones and never a mix. A cached
download (``<dest>/<version>``) is checked file by file against the manifest before it is
reused, and fetched again when it differs.

`ArtifactStore` is the protocol; `VersionedStore` the version logic, once, over four object
primitives that each store implements: `remote.storage.s3` (boto3 through the one adaptor,
AWS or the sandbox's moto) and `remote.storage.local` (a directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode

from remote.errors import ArtifactNotFound, ChecksumMismatch, RemotePathRefused, StorageError
from remote.processes import pid_alive
from remote.storage.paths import check_relative_path, safe_join, sha256_of

MODELS_PREFIX = "models/"
LATEST_KEY = "models/latest.json"
MANIFEST_FILE = "MANIFEST.json"
_VERSION = re.compile(r"^\d{8}T\d{6}Z-[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", re.ASCII)  # ASCII digits only
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TAG_VALUE = re.compile(r"^[A-Za-z0-9 +\-=._:/@]{0,256}$")


@dataclass(frozen=True)
class ArtifactTags:
    """Tags every object of a version carries (S3 object tags, and in the manifest)."""

    run_id: str
    trained_date: str
    """UTC date the models were trained, YYYY-MM-DD."""
    gpu: str
    """What trained them, e.g. "NVIDIA A10G" or "none (sandbox CPU)"."""

    def check(self) -> ArtifactTags:
        if not _RUN_ID.match(self.run_id):
            raise RemotePathRefused(f"run id {self.run_id!r} is not a plain name (letters, digits, . _ -)")
        for name in ("trained_date", "gpu"):
            if not _TAG_VALUE.match(getattr(self, name)):
                raise RemotePathRefused(f"tag {name}={getattr(self, name)!r} has characters S3 tags do not allow")
        return self

    def as_query(self) -> str:
        return urlencode(asdict(self))


@dataclass(frozen=True)
class VersionRecord:
    """One uploaded version as the store describes it."""

    version: str
    tags: ArtifactTags
    files: dict[str, tuple[int, str]]
    """Relative path -> (size, sha256)."""
    created_at: str

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.files.values())


def new_version_name(run_id: str, now: datetime | None = None) -> str:
    """``<UTC timestamp>-<run id>``, the name of a new version."""
    now = now or datetime.now(timezone.utc)
    name = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{run_id}"
    return check_version(name)


def version_run_id(version: str) -> str:
    """The run id a version name ends with (``20261123T110455Z-run-42`` -> ``run-42``)."""
    return check_version(version)[len("YYYYMMDDTHHMMSSZ-") :]


def check_version(version: str) -> str:
    if not isinstance(version, str) or not _VERSION.match(version):
        raise RemotePathRefused(f"version {version!r} is not of the form YYYYMMDDTHHMMSSZ-RUNID")
    return version


class ArtifactStore(Protocol):
    """What the upload and download steps, the checkpoint shelf and the gate's copy need from a store."""

    def ensure_bucket(self) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> str: ...

    def get_bytes(self, key: str) -> bytes | None: ...

    def put_file(self, key: str, path: Path, sha256: str | None = None) -> str: ...

    def get_file(self, key: str, dest: Path) -> str | None: ...

    def upload_version(self, local_dir: Path, tags: ArtifactTags, *, version: str | None = None) -> VersionRecord: ...

    def download_version(self, version: str, dest_dir: Path) -> Path: ...

    def list_versions(self) -> list[VersionRecord]: ...

    def latest(self) -> VersionRecord | None: ...

    def remove_partial_versions(self, run_id: str) -> list[str]: ...

    def describe(self) -> str: ...


class VersionedStore(ABC):
    """The version logic, once, over four object primitives."""

    # --- primitives -----------------------------------------------------------

    @abstractmethod
    def _put_file(self, key: str, path: Path, sha256: str, tags: ArtifactTags | None) -> None: ...

    @abstractmethod
    def _put_bytes(self, key: str, data: bytes, tags: ArtifactTags | None) -> None: ...

    @abstractmethod
    def _get_file(self, key: str, dest: Path) -> str | None:
        """Download ``key`` to ``dest``; return the sha256 its metadata records (or None)."""

    @abstractmethod
    def _get_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or None if it does not exist."""

    @abstractmethod
    def _list_versions(self) -> list[str]: ...

    @abstractmethod
    def _delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix`` (and, on S3, abort the unfinished
        multipart uploads there); how many objects went."""

    def recorded_sha256(self, key: str) -> str | None:
        """The sha256 the object ``key`` records in its metadata, or None when it is absent.

        What a resumed copy (`remote.storage.mirror`) asks before sending a file again. This
        fallback downloads the object; every store here answers from its metadata instead."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            try:
                return self._get_file(key, Path(tmp) / "object")
            except ArtifactNotFound:
                return None

    @abstractmethod
    def describe(self) -> str: ...

    # --- small records ---------------------------------------------------------

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` whole under ``key`` (a plain relative path outside ``models/``) with its
        sha256 in the object's metadata; a reader sees the previous bytes or these, never a mix.
        Returns the sha256."""
        self._put_bytes(_record_key(key), bytes(data), None)
        return hashlib.sha256(data).hexdigest()

    def get_bytes(self, key: str) -> bytes | None:
        """The bytes stored under ``key`` (checked against their recorded sha256), or None when
        there is no such object; `ChecksumMismatch` when they differ from the record."""
        return self._get_bytes(_record_key(key))

    def put_file(self, key: str, path: Path, sha256: str | None = None) -> str:
        """Store the file at ``path`` under ``key`` (outside ``models/``) with its sha256 in the
        object's metadata; the sha256 (computed here unless given)."""
        digest = sha256 or sha256_of(Path(path))
        self._put_file(_record_key(key), Path(path), digest, None)
        return digest

    def get_file(self, key: str, dest: Path) -> str | None:
        """Download ``key`` to ``dest``; the sha256 its metadata records (the caller checks it)."""
        return self._get_file(_record_key(key), Path(dest))

    def ensure_bucket(self) -> None:  # noqa: B027 - a no-op by design: only some stores have a bucket to make
        """Make the store ready to write (an S3 bucket is created when missing)."""

    # --- versions -------------------------------------------------------------

    def upload_version(self, local_dir: Path, tags: ArtifactTags, *, version: str | None = None) -> VersionRecord:
        """Upload every regular file under ``local_dir`` as a new version and point
        ``models/latest.json`` at it (last, once everything else is up)."""
        tags.check()
        version = check_version(version) if version else new_version_name(tags.run_id)
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise StorageError(f"nothing to upload: {local_dir} is not a directory")
        files: dict[str, tuple[int, str]] = {}
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file() and not p.is_symlink()):
            rel = check_relative_path(path.relative_to(local_dir).as_posix())
            digest = sha256_of(path)
            self._put_file(f"{MODELS_PREFIX}{version}/{rel}", path, digest, tags)
            files[rel] = (path.stat().st_size, digest)
        if not files:
            raise StorageError(f"nothing to upload: {local_dir} has no files")
        record = VersionRecord(version, tags, files, datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self._put_bytes(f"{MODELS_PREFIX}{version}/{MANIFEST_FILE}", _manifest_bytes(record), tags)
        pointer = {
            "version": version,
            "manifest": f"{MODELS_PREFIX}{version}/{MANIFEST_FILE}",
            **asdict(tags),
            "created_at": record.created_at,
        }
        self._put_bytes(LATEST_KEY, json.dumps(pointer, indent=2).encode(), tags)
        return record

    def read_version(self, version: str) -> VersionRecord:
        """A version's manifest; ``"latest"`` follows the pointer."""
        if version == "latest":
            latest = self.latest()
            if latest is None:
                raise ArtifactNotFound(f"{self.describe()} has no models/latest.json yet; upload a version first")
            return latest
        check_version(version)
        raw = self._get_bytes(f"{MODELS_PREFIX}{version}/{MANIFEST_FILE}")
        if raw is None:
            raise ArtifactNotFound(f"version {version} is not in {self.describe()}; see `console models list`")
        return _parse_manifest(version, raw)

    def latest(self) -> VersionRecord | None:
        """The version ``models/latest.json`` points at, or None."""
        raw = self._get_bytes(LATEST_KEY)
        if raw is None:
            return None
        try:
            version = json.loads(raw)["version"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{LATEST_KEY} in {self.describe()} is unreadable; re-upload a version") from exc
        return self.read_version(check_version(version))

    def list_versions(self) -> list[VersionRecord]:
        """Every complete version (one with a manifest), oldest first."""
        records = []
        for version in sorted(self._list_versions()):
            if not _VERSION.match(version):
                continue
            raw = self._get_bytes(f"{MODELS_PREFIX}{version}/{MANIFEST_FILE}")
            if raw is not None:
                records.append(_parse_manifest(version, raw))
        return records

    def remove_partial_versions(self, run_id: str) -> list[str]:
        """Delete the versions of ``run_id`` that have objects but no manifest, and return them.

        A version's manifest goes up after its files, so a version without one is what an upload
        killed part-way leaves behind. Call this only while driving ``run_id`` (its `RunLock`
        held), before uploading again: no upload of that run can then be in flight. Complete
        versions (manifest present, even one unreadable or damaged), the one ``latest.json``
        names, and other runs' versions are never touched."""
        if not _RUN_ID.match(run_id):
            raise RemotePathRefused(f"run id {run_id!r} is not a plain name (letters, digits, . _ -)")
        pointed = None
        raw = self._get_bytes(LATEST_KEY)
        if raw is not None:
            try:
                pointed = json.loads(raw).get("version")
            except (ValueError, AttributeError):
                pointed = None
        try:
            versions = self._list_versions()
        except ArtifactNotFound:  # no bucket yet: nothing was ever uploaded
            return []
        removed = []
        for version in sorted(versions):
            if not _VERSION.match(version) or version_run_id(version) != run_id or version == pointed:
                continue
            try:
                if self._get_bytes(f"{MODELS_PREFIX}{version}/{MANIFEST_FILE}") is not None:
                    continue
            except ChecksumMismatch:
                continue  # a manifest is there, damaged: not ours to judge here
            self._delete_prefix(f"{MODELS_PREFIX}{version}/")
            removed.append(version)
        return removed

    def download_version(self, version: str, dest_dir: Path) -> Path:
        """Download a version (or ``"latest"``) to ``dest_dir/<version>`` and return it.

        Every file's sha256 is checked; any path escaping the target is refused. The
        version appears under its final name only when complete; if it is already
        there, it is returned as is.
        """
        record = self.read_version(version)
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        final = safe_join(dest_dir, record.version)
        if final.is_dir():
            if _matches_manifest(final, record):
                return final
            # Edited, truncated or half-deleted since it was verified: never reuse it as is.
            stale = safe_join(dest_dir, f".rc-stale-{record.version}-{os.getpid()}-{secrets.token_hex(4)}")
            os.replace(final, stale)
            shutil.rmtree(stale, ignore_errors=True)
        _sweep_dead_downloads(dest_dir)
        staging = safe_join(dest_dir, f".rc-partial-{record.version}-{os.getpid()}-{secrets.token_hex(4)}")
        staging.mkdir()
        try:
            for rel, (_size, expected) in sorted(record.files.items()):
                target = safe_join(staging, rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                recorded = self._get_file(f"{MODELS_PREFIX}{record.version}/{rel}", target)
                actual = sha256_of(target)
                if actual != expected or (recorded is not None and recorded != expected):
                    raise ChecksumMismatch(
                        f"{rel} in version {record.version} has sha256 {actual[:12]}..., expected {expected[:12]}...; "
                        f"refusing the download (the stored copy is damaged or was changed)"
                    )
            os.replace(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return final


def _matches_manifest(folder: Path, record: VersionRecord) -> bool:
    """True when ``folder`` holds exactly the manifest's files, each with its size and sha256."""
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
    if found != set(record.files):
        return False
    for rel, (size, expected) in record.files.items():
        path = folder / rel
        if path.is_symlink() or path.stat().st_size != size or sha256_of(path) != expected:
            return False
    return True


def _record_key(key: str) -> str:
    """A key for `put_bytes` / `get_bytes`: a plain relative path, never inside the versions."""
    check_relative_path(key)
    if key.startswith(MODELS_PREFIX) or key.endswith(".meta.json"):
        raise RemotePathRefused(f"key {key!r} is reserved for model versions; use another prefix (e.g. gates/)")
    return key


def _sweep_dead_downloads(dest_dir: Path) -> None:
    """Remove staging (and stale) folders of downloads whose process died (a SIGKILL skips ``finally``)."""
    for staging in [*dest_dir.glob(".rc-partial-*"), *dest_dir.glob(".rc-stale-*")]:
        parts = staging.name.rsplit("-", 2)
        if len(parts) == 3 and parts[1].isdigit() and not pid_alive(int(parts[1])):
            shutil.rmtree(staging, ignore_errors=True)


def _manifest_bytes(record: VersionRecord) -> bytes:
    return json.dumps(
        {
            "version": record.version,
            "created_at": record.created_at,
            "tags": asdict(record.tags),
            "files": {rel: {"size": size, "sha256": sha} for rel, (size, sha) in record.files.items()},
        },
        indent=2,
        sort_keys=True,
    ).encode()


def _parse_manifest(version: str, raw: bytes) -> VersionRecord:
    try:
        data = json.loads(raw)
        tags = ArtifactTags(**data["tags"])
        files = {str(rel): (int(v["size"]), str(v["sha256"])) for rel, v in data["files"].items()}
        return VersionRecord(version, tags, files, str(data.get("created_at", "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"manifest of version {version} is unreadable; re-upload that version") from exc
