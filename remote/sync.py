"""Delta sync of a local directory to a directory on a host, by content manifest.

The far side keeps ``.rc-sync-manifest.json`` (path -> size, sha256, mode) describing
what the last sync left there. A sync:

1. reads that manifest and a size listing of the remote directory in ONE command;
2. walks the local directory (``.gitignore`` and ``.consoleignore`` patterns honoured)
   and hashes only files that might be unchanged (same path and size on the far side);
   a local hash cache keyed by (size, mtime, inode) makes an unchanged tree cost a stat
   per file;
3. streams every changed file, under a temporary name next to its final place, in one
   tar stream over one SSH channel (hashing as it reads, so new files are read once);
   the same remote command then renames each into place (rename(2): each file appears
   whole or not at all), removes files deleted locally when asked, and finally renames
   the new manifest in.

A second sync with nothing changed moves nothing but the manifest read and listing.
Bulk bytes go through the system ``ssh`` with the runner's pinned key (see
`remote.ssh.SSHRunner.upload_stream`); small deltas use the open paramiko connection.

Concurrent syncs into the same remote directory are not supported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import stat
import tarfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from remote.errors import RemoteError, RemotePathRefused, SyncFailed
from remote.ignore import IgnoreRules
from remote.runner import Runner, check_remote_path

MANIFEST_NAME = ".rc-sync-manifest.json"
_TMP_PREFIX = ".rc-sync-"
OPENSSH_THRESHOLD_BYTES = 8 << 20
"""Deltas at least this big go through the system ssh (faster per byte, ~0.1 s to start)."""
_CHUNK = 1 << 20
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class FileEntry:
    """One file as the manifest records it."""

    path: str
    """POSIX path relative to the synced root."""
    size: int
    sha256: str
    executable: bool = False


@dataclass
class SyncReport:
    """What one sync did."""

    remote_dir: str
    files_sent: int = 0
    bytes_sent: int = 0
    files_skipped: int = 0
    """Files already identical on the far side."""
    files_deleted: int = 0
    links_skipped: list[str] = field(default_factory=list)
    """Symbolic links found locally and not followed."""
    seconds: float = 0.0
    transport: str = "none"
    """How the changed files travelled: "openssh", "paramiko" or "none"."""

    def summary(self) -> str:
        mib = self.bytes_sent / (1 << 20)
        return (
            f"sent {self.files_sent} files ({mib:.1f} MiB), {self.files_skipped} unchanged, "
            f"{self.files_deleted} deleted, in {self.seconds:.2f} s"
        )


# --- local side -------------------------------------------------------------------


@dataclass
class _LocalFile:
    path: str
    abspath: str
    size: int
    mtime_ns: int
    inode: int
    executable: bool
    sha256: str | None = None


def scan_local(root: Path, rules: IgnoreRules, links: list[str] | None = None) -> dict[str, _LocalFile]:
    """Regular files under ``root`` that the rules keep, by POSIX relative path."""
    found: dict[str, _LocalFile] = {}
    root_str = str(root)
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root_str, rel_dir) if rel_dir else root_str) as it:
            for entry in it:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if _BAD_NAME.search(entry.name):
                    raise RemotePathRefused(f"local file name {rel!r} has control characters; rename it before syncing")
                if entry.is_symlink():
                    if links is not None and not rules.ignored(rel, False):
                        links.append(rel)
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if not rules.ignored(rel, True):
                        stack.append(rel)
                elif entry.is_file(follow_symlinks=False) and not rules.ignored(rel, False):
                    st = entry.stat(follow_symlinks=False)
                    found[rel] = _LocalFile(
                        rel, entry.path, st.st_size, st.st_mtime_ns, st.st_ino, bool(st.st_mode & stat.S_IXUSR)
                    )
    return found


def _hash_file(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class HashCache:
    """sha256 of local files keyed by (size, mtime_ns, inode), kept in one JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, list] = {}
        if path is not None and path.exists():
            try:
                self._entries = json.loads(path.read_text()).get("files", {})
            except (ValueError, OSError):
                self._entries = {}

    @classmethod
    def for_sync(cls, cache_dir: Path | None, root: Path, remote_key: str) -> HashCache:
        if cache_dir is None:
            return cls(None)
        name = hashlib.sha1(f"{root.resolve()}|{remote_key}".encode()).hexdigest()[:20]
        return cls(Path(cache_dir) / f"sync-{name}.json")

    def lookup(self, f: _LocalFile) -> str | None:
        hit = self._entries.get(f.path)
        if hit and hit[0] == f.size and hit[1] == f.mtime_ns and hit[2] == f.inode:
            return hit[3]
        return None

    def save(self, files: Iterable[_LocalFile]) -> None:
        if self.path is None:
            return
        entries = {f.path: [f.size, f.mtime_ns, f.inode, f.sha256] for f in files if f.sha256}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"version": 1, "files": entries}))
        os.replace(tmp, self.path)


# --- remote side --------------------------------------------------------------------


def _remote_state(runner: Runner, remote_dir: str) -> tuple[dict[str, FileEntry], dict[str, int]]:
    """The far side's manifest and its actual file sizes, in one round trip; leftover
    temporary files from an interrupted sync are removed on the way."""
    script = (
        'd="$0"; [ -d "$d" ] || { echo "#absent"; exit 0; }; '
        f'find "$d" -name {shlex.quote(_TMP_PREFIX + "*")} -type f ! -name {shlex.quote(MANIFEST_NAME)} -delete 2>/dev/null; '
        f'echo "#manifest"; cat "$d/{MANIFEST_NAME}" 2>/dev/null; echo; '
        'echo "#sizes"; find "$d" -type f -printf "%s %P\\n" 2>/dev/null; echo "#end"'
    )
    out = runner.run(["sh", "-c", script, remote_dir], timeout_s=120).output
    if out.startswith("#absent"):
        return {}, {}
    head, _, rest = out.partition("#sizes\n")
    manifest_text = head.split("#manifest\n", 1)[-1].strip()
    manifest: dict[str, FileEntry] = {}
    if manifest_text:
        try:
            raw = json.loads(manifest_text)
            for path, (size, sha, executable) in raw.get("files", {}).items():
                manifest[path] = FileEntry(path, int(size), str(sha), bool(executable))
        except (ValueError, TypeError, AttributeError):
            manifest = {}  # unreadable: treat the far side as empty and resend
    sizes: dict[str, int] = {}
    for line in rest.splitlines():
        if line == "#end":
            break
        size, _, path = line.partition(" ")
        if size.isdigit():
            sizes[path] = int(size)
    return manifest, sizes


def _write_all(sink: BinaryIO, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = sink.write(view)
        if n is None:
            raise SyncFailed("stream to the host would block; sync aborted")
        view = view[n:]


def _tar_header(name: str, size: int, mode: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, mode, int(time.time()), tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape")


def _pad(size: int) -> bytes:
    return b"\0" * ((512 - size % 512) % 512)


def _stream_file(sink: BinaryIO, f: _LocalFile, tmp_name: str, *, hash_here: bool) -> None:
    """Append one file to the tar stream.

    Into a pipe (the system ssh) the bytes go by ``sendfile`` (no copy through Python)
    and the hash is computed by the caller on another thread; into a paramiko channel
    they are read, hashed (``hash_here``) and written.
    """
    _write_all(sink, _tar_header(tmp_name, f.size, 0o755 if f.executable else 0o644))
    try:
        out_fd = sink.fileno()
    except (OSError, AttributeError, ValueError):
        out_fd = None
    digest = hashlib.sha256() if hash_here else None
    with open(f.abspath, "rb") as fh:
        offset, left = 0, f.size
        while left:
            if out_fd is not None:
                n = os.sendfile(out_fd, fh.fileno(), offset, min(left, 1 << 24))
            else:
                chunk = fh.read(min(_CHUNK, left))
                n = len(chunk)
                if digest is not None:
                    digest.update(chunk)
                _write_all(sink, chunk)
            if n == 0:
                raise SyncFailed(f"{f.path} shrank while it was being synced; run the sync again")
            offset += n
            left -= n
    _write_all(sink, _pad(f.size))
    if digest is not None:
        f.sha256 = digest.hexdigest()


def _has_fileno(sink: BinaryIO) -> bool:
    try:
        sink.fileno()
        return True
    except (OSError, AttributeError, ValueError):
        return False


def _stream_bytes(sink: BinaryIO, name: str, data: bytes) -> None:
    _write_all(sink, _tar_header(name, len(data), 0o644) + data + _pad(len(data)))


def _parent_dirs(path: str) -> str:
    return path.rsplit("/", 1)[0] + "/" if "/" in path else ""


# --- the sync -------------------------------------------------------------------------


def sync_dir(
    runner: Runner,
    local_dir: Path | str,
    remote_dir: str,
    *,
    excludes: Iterable[str] = (),
    delete: bool = False,
    cache_dir: Path | None = None,
    use_openssh: bool | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> SyncReport:
    """Make ``remote_dir`` on the host hold the same files as ``local_dir`` (minus ignores).

    Only files whose size or sha256 differ from the far side's manifest travel; each
    lands atomically. With ``delete`` files that an earlier sync put there and that are
    gone locally are removed (files the sync never put there are never touched).
    ``cache_dir`` keeps local hashes between syncs so an unchanged tree is not re-read.
    ``use_openssh``: None picks by delta size, True/False forces the bulk path.
    ``on_progress`` gets one line before the transfer and one per file streamed.
    Raises SyncFailed, RemotePathRefused, or the runner's connection errors.
    """
    started = time.monotonic()
    root = Path(local_dir)
    if not root.is_dir():
        raise SyncFailed(f"local directory {root} does not exist; check the path")
    check_remote_path(remote_dir)
    report = SyncReport(remote_dir)
    say = on_progress or (lambda _msg: None)

    rules = IgnoreRules.for_root(root, excludes)
    local = scan_local(root, rules, report.links_skipped)
    cache = HashCache.for_sync(cache_dir, root, f"{runner.target.instance_id}:{remote_dir}")
    remote_manifest, remote_sizes = _remote_state(runner, remote_dir)

    to_send: list[_LocalFile] = []
    for f in local.values():
        f.sha256 = cache.lookup(f)
        known = remote_manifest.get(f.path)
        if known is None or known.size != f.size or remote_sizes.get(f.path) != f.size:
            to_send.append(f)  # certainly changed: hashed while it streams
            continue
        if f.sha256 is None:
            f.sha256 = _hash_file(f.abspath)
        if f.sha256 != known.sha256 or f.executable != known.executable:
            to_send.append(f)
        else:
            report.files_skipped += 1
    to_delete = sorted(p for p in remote_manifest if p not in local) if delete else []

    # The manifest must also change when files were added/removed locally even if no
    # bytes move (without ``delete`` such files stay on the host, unlisted).
    if to_send or to_delete or remote_manifest.keys() != local.keys():
        _push(runner, remote_dir, to_send, to_delete, local, report, use_openssh, say)
    cache.save(local.values())
    report.seconds = time.monotonic() - started
    return report


def _push(
    runner: Runner,
    remote_dir: str,
    to_send: list[_LocalFile],
    to_delete: list[str],
    local: dict[str, _LocalFile],
    report: SyncReport,
    use_openssh: bool | None,
    say: Callable[[str], None],
) -> None:
    token = secrets.token_hex(6)
    total = sum(f.size for f in to_send)
    if use_openssh is None:
        use_openssh = total >= OPENSSH_THRESHOLD_BYTES
    renames: list[tuple[str, str]] = []
    script_name = f"{_TMP_PREFIX}{token}.sh"
    command = (
        f"mkdir -p {shlex.quote(remote_dir)} && cd {shlex.quote(remote_dir)} && "
        f"tar -x --no-same-owner -f - && sh {shlex.quote(script_name)}; "
        f"rc=$?; rm -f {shlex.quote(script_name)}; exit $rc"
    )
    say(f"sending {len(to_send)} files ({total / (1 << 20):.1f} MiB) to {remote_dir}")
    try:
        with runner.upload_stream(command, use_openssh=use_openssh) as sink:
            piped = _has_fileno(sink)
            with ThreadPoolExecutor(1, thread_name_prefix="rc-sync-hash") as pool:
                # Into a pipe, a second thread hashes while the kernel copies (both
                # release the GIL); a file edited meanwhile just resends next time.
                hashing = {f.path: pool.submit(_hash_file, f.abspath) for f in to_send if piped}
                for i, f in enumerate(to_send):
                    tmp = f"{_parent_dirs(f.path)}{_TMP_PREFIX}{token}-{i}"
                    _stream_file(sink, f, tmp, hash_here=not piped)
                    renames.append((tmp, f.path))
                    report.bytes_sent += f.size
                    say(f"sent {f.path} ({f.size} bytes)")
                for f in to_send:
                    if f.path in hashing:
                        f.sha256 = hashing[f.path].result()
            # Every local file now has a hash: unchanged ones from the comparison or
            # the cache, sent ones from the stream.
            manifest = {
                "version": 1,
                "files": {
                    p: [f.size, f.sha256 or _hash_file(f.abspath), f.executable] for p, f in sorted(local.items())
                },
            }
            manifest_tmp = f"{_TMP_PREFIX}{token}-manifest"
            _stream_bytes(sink, manifest_tmp, json.dumps(manifest, separators=(",", ":")).encode())
            lines = ["set -e"]
            lines += [f"mv -f -- {shlex.quote(src)} {shlex.quote(dst)}" for src, dst in renames]
            lines += [f"rm -f -- {shlex.quote(p)}" for p in to_delete]
            lines.append(f"mv -f -- {shlex.quote(manifest_tmp)} {shlex.quote(MANIFEST_NAME)}")
            _stream_bytes(sink, script_name, ("\n".join(lines) + "\n").encode())
            _write_all(sink, b"\0" * 1024)
    except RemoteError:
        raise
    except OSError as exc:
        raise SyncFailed(
            f"sync to {remote_dir} on {runner.target.where} broke off: {exc}; run it again "
            f"(files already renamed into place are whole; the rest resend)"
        ) from exc
    report.files_sent = len(to_send)
    report.files_deleted = len(to_delete)
    report.transport = "openssh" if use_openssh else "paramiko"


def fetch_dir(runner: Runner, remote_dir: str, local_dir: Path | str, *, use_openssh: bool | None = None) -> SyncReport:
    """Copy a directory from the host into ``local_dir`` (whole, one tar stream).

    Used to bring artifacts back before they go to the store. Every member is checked
    before it is written (remote.storage.extract_tar_safely): a member that is a link or
    would land outside ``local_dir`` refuses the archive with ArtifactPathEscape.
    """
    from remote.storage import extract_tar_safely

    started = time.monotonic()
    check_remote_path(remote_dir)
    report = SyncReport(
        remote_dir, transport="openssh" if use_openssh or (use_openssh is None and shutil.which("ssh")) else "paramiko"
    )
    command = f"cd {shlex.quote(remote_dir)} && tar -c -f - --exclude={shlex.quote(_TMP_PREFIX + '*')} ."
    with runner.download_stream(command, use_openssh=use_openssh) as stream:
        written = extract_tar_safely(stream, Path(local_dir))
    report.files_sent = len(written)
    report.bytes_sent = sum((Path(local_dir) / rel).stat().st_size for rel in written)
    report.seconds = time.monotonic() - started
    return report
