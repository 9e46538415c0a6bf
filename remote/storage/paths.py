"""Paths inside an artifact store and a download target: checked before anything is written.

A relative artifact path must be plain (no ``..``, no absolute path, no control
characters); a join must land inside its root even through a symlink already there; a tar
stream is refused whole on any member that is not a plain file or directory or would land
outside its target (tar-slip).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tarfile
from pathlib import Path
from typing import IO

from remote.errors import ArtifactPathEscape

_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def check_relative_path(rel: str) -> str:
    """Return ``rel`` if it is a plain relative POSIX path, else raise ArtifactPathEscape."""
    if (
        not isinstance(rel, str)
        or not rel
        or rel.startswith("/")
        or _CONTROL.search(rel)
        or any(part in ("", ".", "..") for part in rel.split("/"))
    ):
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
