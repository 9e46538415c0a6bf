"""Copy model versions between any two stores, verified and resumable (the runbook's rsync between clouds).

`mirror_versions` copies every complete version of ``source`` (or the ones named) that the
target lacks, then points the target's ``models/latest.json`` where the source's points:

- each file comes down into a local staging folder, where its sha256 is checked against the
  source's manifest and the object's own record, and goes up with that sha256 recorded;
- a file the target already holds with the manifest's sha256 (`recorded_sha256`) is not
  sent again, so an interrupted copy resumes where it stopped;
- the version's manifest goes up only after all its files, and ``latest.json`` last: a
  half-copied version has no manifest, so the target never lists it as complete.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from remote.errors import ArtifactNotFound, ChecksumMismatch
from remote.storage.paths import sha256_of
from remote.storage.versions import LATEST_KEY, MANIFEST_FILE, MODELS_PREFIX, VersionedStore, check_version


@dataclass
class MirrorReport:
    copied: list[str] = field(default_factory=list)
    """Versions copied (or finished) by this call."""
    already: list[str] = field(default_factory=list)
    """Versions the target held complete already."""
    files_sent: int = 0
    files_skipped: int = 0
    """Files the target already held with the right sha256 (a resumed copy)."""
    latest: str | None = None


def mirror_versions(
    source: VersionedStore,
    target: VersionedStore,
    *,
    versions: Sequence[str] | None = None,
    on_file: Callable[[str, str], None] = lambda version, rel: None,
) -> MirrorReport:
    """Copy ``versions`` (default: all complete ones) from ``source`` to ``target``; see the module docstring."""
    report = MirrorReport()
    records = (
        [source.read_version(check_version(v) if v != "latest" else v) for v in versions]
        if versions
        else source.list_versions()
    )
    target.ensure_bucket()
    for record in records:
        manifest_key = f"{MODELS_PREFIX}{record.version}/{MANIFEST_FILE}"
        raw_manifest = source._get_bytes(manifest_key)
        if raw_manifest is None:
            raise ArtifactNotFound(f"version {record.version} vanished from {source.describe()} while copying")
        if target._get_bytes(manifest_key) == raw_manifest:
            report.already.append(record.version)
            continue
        staging = Path(tempfile.mkdtemp(prefix="rc-mirror-"))
        try:
            for rel, (_size, sha) in sorted(record.files.items()):
                key = f"{MODELS_PREFIX}{record.version}/{rel}"
                if target.recorded_sha256(key) == sha:
                    report.files_skipped += 1
                    continue
                local = staging / "file"
                recorded = source._get_file(key, local)
                actual = sha256_of(local)
                if actual != sha or (recorded is not None and recorded != sha):
                    raise ChecksumMismatch(
                        f"{rel} of version {record.version} in {source.describe()} has sha256 {actual[:12]}..., "
                        f"its manifest says {sha[:12]}...; not copied"
                    )
                target._put_file(key, local, sha, record.tags)
                report.files_sent += 1
                on_file(record.version, rel)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        target._put_bytes(manifest_key, raw_manifest, record.tags)
        report.copied.append(record.version)
    pointer = source._get_bytes(LATEST_KEY)
    latest = source.latest()
    if (
        pointer is not None
        and latest is not None
        and target._get_bytes(f"{MODELS_PREFIX}{latest.version}/{MANIFEST_FILE}")
    ):
        target._put_bytes(LATEST_KEY, pointer, latest.tags)
        report.latest = latest.version
    return report
