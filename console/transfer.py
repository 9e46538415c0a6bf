"""What moves between this machine, a leased host and the artifact store.

- `ready_host`: the training code and the run's feature files to the host by delta sync
  (`remote.sync`), a check that it can train (Python and libraries, its GPU or, on the
  sandbox, its absence), and the run's lease (`training.guard.Lease`), which the
  training guard on the host checks before anything trains. The sync step runs it, and the
  ``ssh`` backend's host pool runs it again on a replacement host.
- `place_version`: a stored version (sha256 checked) into the local models directory, its
  champions settled against the local ones (`training.champions`).

Where things go on the host is `remote.backends.ssh.RemoteLayout`.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.errors import Interrupted, StepFailed
from console.outputs import DownloadOutputs, HostCoordinates, SyncOutputs
from console.resources import Resources
from remote.backends.ssh.hosts import RemoteLayout
from remote.metrics import HostReading, read_host
from remote.providers.base import ProviderCapability
from remote.storage import safe_join, sha256_of
from remote.sync import sync_dir
from training.atomic import atomic_path
from training.champions import DEFAULT_CHAMPION_DAYS, settle

if TYPE_CHECKING:  # pragma: no cover
    from remote.ssh import SSHRunner
    from remote.storage import ArtifactStore
    from training.champions import ChallengeFn

PYTHON_CHECK = (
    "import sys; print('python', sys.version.split()[0]); "
    "import importlib.util as u; "
    "print('missing', ','.join(m for m in ('numpy', 'pandas', 'pyarrow', 'torch') if u.find_spec(m) is None) or '-')"
)


@dataclass(frozen=True)
class HostReady:
    """What readying a host did: the sync step's outputs, its one-line summary and details."""

    outputs: SyncOutputs
    summary: str
    details: dict[str, Any]


def host_kind(resources: Resources) -> str:
    """How the configured provider's hosts prove who they are to the training guard."""
    capabilities = resources.provider().capabilities
    if ProviderCapability.IDENTIFIES_BY_MACHINE_ID in capabilities:
        return "static"
    return "sandbox" if resources.sandboxed else "aws"


def ready_host(
    resources: Resources,
    runner: "SSHRunner",
    host: HostCoordinates,
    *,
    run_id: str,
    symbols: list[str],
    log: logging.Logger,
    cancelled: threading.Event | None = None,
) -> HostReady:
    """Send code and features, check the host can train, and write the run's lease there."""
    import training

    def check_cancelled() -> None:
        if cancelled is not None and cancelled.is_set():
            raise Interrupted("the sync was cancelled")

    layout = RemoteLayout.at(host.remote_root)
    features = resources.paths.features
    # A feature file is a folder of parts now (an older one a single file): either counts.
    missing = [s for s in symbols if not (features / f"{s}.parquet").exists()]
    if missing:
        raise StepFailed(f"no feature file for {', '.join(missing)} in {features}", hint="run the features step first")
    cache = resources.paths.sync_cache
    check_cancelled()
    code = sync_dir(
        runner,
        Path(training.__file__).parent,
        f"{layout.code}/training",
        excludes=["*.egg-info/"],
        delete=True,
        cache_dir=cache,
        on_progress=log.info,
    )
    log.info("code: %s", code.summary())
    check_cancelled()
    wanted = {f"{s}.parquet" for s in symbols}
    others = [p.name for p in features.iterdir() if p.name not in wanted]
    feats = sync_dir(
        runner,
        features,
        layout.features,
        excludes=[f"/{_escape_glob(n)}" for n in others],
        delete=True,
        cache_dir=cache,
        on_progress=log.info,
    )
    log.info("features: %s", feats.summary())
    check_cancelled()
    python = runner.run(["python3", "-c", PYTHON_CHECK], timeout_s=120, check=False)
    if python.exit_status != 0:
        raise StepFailed(
            f"the instance has no working python3 ({python.output[-200:].strip() or 'not found'})",
            hint="use an image with Python 3.10+ (the Deep Learning AMI has it)",
        )
    log.info("host python: %s", python.output.replace("\n", "; "))
    reading = read_host(runner)
    gpu = gpu_label(reading)
    kind = host_kind(resources)
    if kind != "sandbox" and not reading.gpus:
        raise StepFailed(
            "the instance has no usable GPU (nvidia-smi found none)", hint="terminate it and launch a GPU instance type"
        )
    fingerprint = runner.host_key.fingerprint if runner.host_key else ""
    expires = _write_lease(resources, runner, host.instance_id, run_id, kind, fingerprint, layout.lease)
    outputs = SyncOutputs(
        remote_code_dir=layout.code,
        remote_features_dir=layout.features,
        remote_artifacts_dir=layout.artifacts,
        lease_path=layout.lease,
        lease_expires_at=expires,
        gpu=gpu,
        host_kind=kind,
        host_key_fingerprint=fingerprint,
        instance_id=host.instance_id,
    )
    summary = (
        f"code {code.files_sent} sent/{code.files_skipped} unchanged, features {feats.files_sent} sent/"
        f"{feats.files_skipped} unchanged ({feats.bytes_sent / (1 << 20):.1f} MiB); GPU: {gpu}; "
        f"lease until {expires}"
    )
    details = {
        "code": code.summary(),
        "features": feats.summary(),
        "python": python.output,
        "cpu_pct": reading.cpu_pct,
        "memory_total_mib": reading.memory_total_mib,
    }
    return HostReady(outputs, summary, details)


def lease_is_for(runner: "SSHRunner", host: HostCoordinates) -> bool:
    """True when the host already holds a lease written for it (a static host: any lease of ours)."""
    import json

    text = runner.read_text(RemoteLayout.at(host.remote_root).lease)
    try:
        lease = json.loads(text) if text else None
    except ValueError:
        return False
    return isinstance(lease, dict) and (
        lease.get("host_kind") == "static" or lease.get("instance_id") == host.instance_id
    )


def _write_lease(
    resources: Resources, runner: "SSHRunner", instance_id: str, run_id: str, kind: str, fingerprint: str, path: str
) -> str:
    from training.guard import Lease, machine_id

    if kind == "static":
        # A static host proves itself by its machine id, read over the pinned link.
        instance_id = runner.run(["cat", "/etc/machine-id"], timeout_s=30).output.strip()
    hours = float(resources.settings.max_runtime_hours)
    lease = Lease.issue(
        run_id=run_id,
        host_kind=kind,
        instance_id=instance_id,
        host_key_fingerprint=fingerprint,
        operator_machine_id=machine_id() or "unknown",
        valid_for=timedelta(hours=hours, minutes=30),
    )
    runner.write_text(path, lease.to_json() + "\n", mode=0o600)
    return lease.expires_at


def gpu_label(reading: HostReading) -> str:
    if reading.gpus:
        names = sorted({g.name for g in reading.gpus})
        return f"{len(reading.gpus)}x {', '.join(names)}"
    return "none - CPU only"


def _escape_glob(name: str) -> str:
    return "".join("\\" + c if c in "*?[]\\!#" else c for c in name)


def champion_rules(resources: Resources) -> dict[str, Any]:
    """`place_version`'s champion settings from the profile: the same-bars challenge over the
    local feature files, and ``gate.champion_days``."""
    from runtime_checks.champion import same_bars_challenge

    return {
        "challenge": same_bars_challenge(resources.paths.features),
        "champion_days": float(resources.settings.gate.champion_days),
    }


def place_version(
    store: "ArtifactStore",
    version: str,
    models_root: Path,
    downloads: Path,
    *,
    challenge: "ChallengeFn | None" = None,
    champion_days: float = DEFAULT_CHAMPION_DAYS,
) -> DownloadOutputs:
    """Download ``version`` (verified), add its model folders to ``models_root``, then settle
    the champions (`training.champions.settle`): a newly passed model meets the current
    champion on the same bars through ``challenge``, an expired champion is not defended,
    and ``champions/`` and ``roster.json`` change together under one lock, the roster last."""
    local = store.download_version(version, downloads)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    models_root.mkdir(parents=True, exist_ok=True)
    # Model folders first; pointers (champions/, roster.json) are settled, not copied, so a
    # reader never sees a champion whose model is not there yet, nor a roster that disowns it.
    for path in files:
        rel = path.relative_to(local).as_posix()
        if rel == "roster.json" or rel.startswith("champions/") or rel == ".registry.lock":
            continue
        target = safe_join(models_root, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file() and sha256_of(target) == sha256_of(path):
            continue
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)
    settle(models_root, local, challenge=challenge, champion_days=champion_days)
    return DownloadOutputs(version=local.name, files=len(files), models_dir=str(models_root))
