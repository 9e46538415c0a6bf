"""Versions in a local directory (tests, and operators without S3): sha256 and tags live in a
``.meta.json`` next to each object, and a lock keeps an object and its metadata together."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from remote.errors import ArtifactNotFound, ChecksumMismatch
from remote.storage.paths import safe_join
from remote.storage.versions import ArtifactTags, VersionedStore


class LocalArtifactStore(VersionedStore):
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

    def recorded_sha256(self, key: str) -> str | None:
        source = self._path(key)
        with self._locked(shared=True):
            return self._recorded(source) if source.is_file() else None

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

    def _delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        with self._locked(shared=False):
            count = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".meta.json"))
            shutil.rmtree(folder)
        return count

    def _list_versions(self) -> list[str]:
        base = self.root / "models"
        return [p.name for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
