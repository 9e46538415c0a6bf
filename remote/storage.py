"""The artifact store: versioned model sets on S3 (or a local directory for tests).

Layout under the store's prefix::

    models/<version>/<relative path>       every file of one uploaded set
    models/<version>/MANIFEST.json         relative path -> size, sha256; and the tags
    models/latest.json                     pointer to the newest complete version

``<version>`` is ``<UTC timestamp>-<run id>`` (e.g. ``20261123T110455Z-run-42``). Files go
up first, the manifest next, and ``latest.json`` last, so a reader that follows the
pointer never finds half a version. Each object carries its sha256 in its metadata
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

`ArtifactStore` is the protocol; `S3ArtifactStore` (boto3, any ``endpoint_url``: AWS or
the sandbox's moto) and `LocalArtifactStore` implement it over the same version logic.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import tarfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterator, Protocol
from urllib.parse import urlencode

from remote.errors import (
    ArtifactNotFound,
    ArtifactPathEscape,
    ChecksumMismatch,
    RemotePathRefused,
    StorageAccessDenied,
    StorageError,
)
from remote.processes import pid_alive

MODELS_PREFIX = "models/"
LATEST_KEY = "models/latest.json"
MANIFEST_FILE = "MANIFEST.json"
_VERSION = re.compile(r"^\d{8}T\d{6}Z-[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TAG_VALUE = re.compile(r"^[A-Za-z0-9 +\-=._:/@]{0,256}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
MULTIPART_THRESHOLD = 16 << 20


# --- paths ------------------------------------------------------------------------


def check_relative_path(rel: str) -> str:
    """Return ``rel`` if it is a plain relative POSIX path, else raise ArtifactPathEscape."""
    if (not isinstance(rel, str) or not rel or rel.startswith("/") or _CONTROL.search(rel)
            or any(part in ("", ".", "..") for part in rel.split("/"))):
        raise ArtifactPathEscape(f"artifact path {rel!r} would escape the target directory; refusing to write it")
    return rel


def safe_join(root: Path, rel: str) -> Path:
    """``root / rel``, refused when it would land outside ``root`` (``..``, absolute, or a
    symlink already inside ``root`` pointing elsewhere)."""
    check_relative_path(rel)
    root_real = os.path.realpath(root)
    target = os.path.join(root_real, *rel.split("/"))
    parent_real = os.path.realpath(os.path.dirname(target))
    if os.path.commonpath([root_real, parent_real]) != root_real or os.path.islink(target):
        raise ArtifactPathEscape(f"artifact path {rel!r} goes through a symlink out of {root}; refusing to write it")
    return Path(target)


def extract_tar_safely(stream: IO[bytes], dest: Path) -> list[str]:
    """Extract a tar stream into ``dest``; refuse the whole archive on any member that is
    not a plain file or directory or would land outside ``dest`` (tar-slip).

    Returns the relative paths of the files written. Members are checked before each is
    written; a refusal raises ArtifactPathEscape (files already written stay inside).
    """
    dest.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            name = member.name[2:] if member.name.startswith("./") else member.name
            name = name.rstrip("/")
            if name in ("", "."):
                continue
            if not (member.isfile() or member.isdir()):
                raise ArtifactPathEscape(f"archive member {member.name!r} is a link or device; refusing the archive")
            path = safe_join(dest, name)
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            tmp = path.with_name(f".{path.name}.rc-tmp-{secrets.token_hex(4)}")
            with open(tmp, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            os.chmod(tmp, 0o755 if member.mode & 0o100 else 0o644)
            os.replace(tmp, path)
            written.append(name)
    return written


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# --- records ------------------------------------------------------------------------


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

    def describe(self) -> str: ...


class _VersionedStore(ABC):
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

    def ensure_bucket(self) -> None:
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
        pointer = {"version": version, "manifest": f"{MODELS_PREFIX}{version}/{MANIFEST_FILE}",
                   **asdict(tags), "created_at": record.created_at}
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
            for rel, (size, expected) in sorted(record.files.items()):
                target = safe_join(staging, rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                recorded = self._get_file(f"{MODELS_PREFIX}{record.version}/{rel}", target)
                actual = sha256_of(target)
                if actual != expected or (recorded is not None and recorded != expected):
                    raise ChecksumMismatch(
                        f"{rel} in version {record.version} has sha256 {actual[:12]}..., expected {expected[:12]}...; "
                        f"refusing the download (the stored copy is damaged or was changed)")
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
    return json.dumps({
        "version": record.version, "created_at": record.created_at, "tags": asdict(record.tags),
        "files": {rel: {"size": size, "sha256": sha} for rel, (size, sha) in record.files.items()},
    }, indent=2, sort_keys=True).encode()


def _parse_manifest(version: str, raw: bytes) -> VersionRecord:
    try:
        data = json.loads(raw)
        tags = ArtifactTags(**data["tags"])
        files = {str(rel): (int(v["size"]), str(v["sha256"])) for rel, v in data["files"].items()}
        return VersionRecord(version, tags, files, str(data.get("created_at", "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"manifest of version {version} is unreadable; re-upload that version") from exc


# --- S3 -------------------------------------------------------------------------------


class S3ArtifactStore(_VersionedStore):
    """Versions in an S3 bucket (AWS, or moto through ``endpoint_url``)."""

    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None, client: object | None = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig

        if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket):
            raise RemotePathRefused(f"bucket name {bucket!r} is not a valid S3 bucket name")
        if prefix:
            check_relative_path(prefix.rstrip("/"))
            prefix = prefix.rstrip("/") + "/"
        self.bucket, self.prefix, self.region = bucket, prefix, region
        self.client = client or boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region)
        self._transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                        multipart_chunksize=max(multipart_threshold, 5 << 20))

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _call(self, what: str, fn, *args, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn(*args, **kwargs)
        except NoCredentialsError as exc:
            raise StorageAccessDenied(f"no AWS credentials for {self.describe()}; set a profile or AWS_* variables") from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ArtifactNotFound(f"{what}: not found in {self.describe()}") from exc
            if code == "NoSuchBucket":
                raise ArtifactNotFound(f"bucket {self.bucket} does not exist; create it with ensure_bucket") from exc
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
                raise StorageAccessDenied(f"{what}: {self.describe()} refused our credentials ({code})") from exc
            raise StorageError(f"{what} failed on {self.describe()}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{what} failed on {self.describe()}: {exc}") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing, blocking all public access and encrypting at rest."""
        try:
            self._call("head bucket", self.client.head_bucket, Bucket=self.bucket)
            return
        except ArtifactNotFound:
            pass
        kwargs: dict = {"Bucket": self.bucket}
        region = self.region or self.client.meta.region_name
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        self._call("create bucket", self.client.create_bucket, **kwargs)
        self._call("block public access", self.client.put_public_access_block, Bucket=self.bucket,
                   PublicAccessBlockConfiguration={"BlockPublicAcls": True, "IgnorePublicAcls": True,
                                                   "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
        self._call("default encryption", self.client.put_bucket_encryption, Bucket=self.bucket,
                   ServerSideEncryptionConfiguration={"Rules": [
                       {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _put_file(self, key: str, path: Path, sha256: str, tags: ArtifactTags | None) -> None:
        extra: dict = {"Metadata": {"sha256": sha256}}
        if tags is not None:
            extra["Tagging"] = tags.as_query()
        self._call(f"upload {key}", self.client.upload_file, str(path), self.bucket, self._key(key),
                   ExtraArgs=extra, Config=self._transfer)

    def _put_bytes(self, key: str, data: bytes, tags: ArtifactTags | None) -> None:
        extra: dict = {"Metadata": {"sha256": hashlib.sha256(data).hexdigest()}, "ContentType": "application/json"}
        if tags is not None:
            extra["Tagging"] = tags.as_query()
        self._call(f"upload {key}", self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data, **extra)

    def _get_file(self, key: str, dest: Path) -> str | None:
        head = self._call(f"read {key}", self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        self._call(f"download {key}", self.client.download_file, self.bucket, self._key(key), str(dest),
                   Config=self._transfer)
        return head.get("Metadata", {}).get("sha256")

    def _get_bytes(self, key: str) -> bytes | None:
        try:
            obj = self._call(f"read {key}", self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        except ArtifactNotFound:
            return None
        data = obj["Body"].read()
        recorded = obj.get("Metadata", {}).get("sha256")
        if recorded and recorded != hashlib.sha256(data).hexdigest():
            raise ChecksumMismatch(f"{key} in {self.describe()} does not match its recorded sha256; refusing it")
        return data

    def _list_versions(self) -> list[str]:
        versions: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call("list versions", lambda: list(paginator.paginate(
            Bucket=self.bucket, Prefix=self._key(MODELS_PREFIX), Delimiter="/")))
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                versions.append(common["Prefix"][len(self._key(MODELS_PREFIX)):].rstrip("/"))
        return versions

    def object_tags(self, key: str) -> dict[str, str]:
        """The S3 tags of one object (for checks and the models list)."""
        out = self._call(f"read tags of {key}", self.client.get_object_tagging, Bucket=self.bucket, Key=self._key(key))
        return {t["Key"]: t["Value"] for t in out.get("TagSet", [])}


# --- local directory ------------------------------------------------------------------


class LocalArtifactStore(_VersionedStore):
    """Versions in a local directory (tests, and operators without S3); sha256 and tags
    live in a ``.meta.json`` next to each object."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return f"local store {self.root}"

    def _path(self, key: str) -> Path:
        return safe_join(self.root, key)

    @contextmanager
    def _locked(self, *, shared: bool) -> Iterator[None]:
        """Writers hold the store's lock alone, readers together: an object and its
        ``.meta.json`` are two files, and a reader must never see one new and one old."""
        with open(self.root / ".rc-store.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _write_meta(self, path: Path, sha256: str, tags: ArtifactTags | None) -> None:
        meta = {"sha256": sha256, "tags": asdict(tags) if tags else {}}
        target = path.with_name(path.name + ".meta.json")
        tmp = target.with_name(f".{target.name}.rc-tmp-{secrets.token_hex(4)}")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, target)

    def _put_file(self, key: str, path: Path, sha256: str, tags: ArtifactTags | None) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.rc-tmp-{secrets.token_hex(4)}")
        shutil.copyfile(path, tmp)
        with self._locked(shared=False):
            self._write_meta(target, sha256, tags)
            os.replace(tmp, target)

    def _put_bytes(self, key: str, data: bytes, tags: ArtifactTags | None) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.rc-tmp-{secrets.token_hex(4)}")
        tmp.write_bytes(data)
        with self._locked(shared=False):
            self._write_meta(target, hashlib.sha256(data).hexdigest(), tags)
            os.replace(tmp, target)

    def _recorded(self, path: Path) -> str | None:
        meta = path.with_name(path.name + ".meta.json")
        try:
            return json.loads(meta.read_text()).get("sha256")
        except (OSError, ValueError):
            return None

    def _get_file(self, key: str, dest: Path) -> str | None:
        source = self._path(key)
        if not source.is_file():
            raise ArtifactNotFound(f"{key} is missing from {self.describe()}")
        with self._locked(shared=True):
            shutil.copyfile(source, dest)
            return self._recorded(source)

    def _get_bytes(self, key: str) -> bytes | None:
        source = self._path(key)
        with self._locked(shared=True):
            try:
                data = source.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                return None
            recorded = self._recorded(source)
        if recorded and recorded != hashlib.sha256(data).hexdigest():
            raise ChecksumMismatch(f"{key} in {self.describe()} does not match its recorded sha256; refusing it")
        return data

    def _list_versions(self) -> list[str]:
        base = self.root / "models"
        return [p.name for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
