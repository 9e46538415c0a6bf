"""The ``sync``, ``upload`` and ``download`` checklist steps, and the one place settings
and launch outputs become an SSH runner or an artifact store.

Layout on the host (relative to the login directory; `RemoteLayout`)::

    rc/code/             the `training` package; the training working directory
    rc/code/.rc-lease.json   the lease the training guard checks (training/guard.py)
    rc/data/features/    the run's feature files
    rc/artifacts/        the artifact root training writes (models/, champions/, roster.json)

``sync`` sends code and features by delta (remote/sync.py), bootstraps (checks the host's
Python and libraries, reads its GPU or reports its absence) and writes the lease.
``upload`` brings ``rc/artifacts`` home and puts it in the store as a new version (the
store moves ``models/latest.json`` last). ``download`` takes that version (or latest),
checks every sha256, and places it in ``<data_root>/models``.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from console.checklist.step import Step, StepContext, StepResult, register
from console.errors import ConfigError, StepFailed, UsageError
from console.steps.params import DownloadParams, SyncParams, UploadParams
from remote.metrics import HostReading, read_host
from remote.ssh import SSHRunner, SSHTarget
from remote.storage import ArtifactTags, S3ArtifactStore, safe_join, sha256_of
from remote.sync import fetch_dir, sync_dir
from training.atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from console.settings import Settings
    from console.state import StateStore

REMOTE_ROOT = "rc"
"""Default root on the host; launch outputs may name another (``remote_root``)."""


@dataclasses.dataclass(frozen=True)
class RemoteLayout:
    """Where the run's things live on the host."""

    root: str = REMOTE_ROOT

    @property
    def code(self) -> str:
        return f"{self.root}/code"

    @property
    def features(self) -> str:
        return f"{self.root}/data/features"

    @property
    def artifacts(self) -> str:
        return f"{self.root}/artifacts"

    @property
    def lease(self) -> str:
        return f"{self.root}/code/.rc-lease.json"

    @classmethod
    def of(cls, coordinates: dict[str, Any]) -> "RemoteLayout":
        from remote.ssh import check_remote_path

        return cls(check_remote_path(str(coordinates.get("remote_root") or REMOTE_ROOT)).rstrip("/"))

SANDBOX_BUCKET = "rc-sandbox-artifacts"
PYTHON_CHECK = (
    "import sys; print('python', sys.version.split()[0]); "
    "import importlib.util as u; "
    "print('missing', ','.join(m for m in ('numpy', 'pandas', 'pyarrow', 'torch') if u.find_spec(m) is None) or '-')"
)


# --- runners and stores from settings --------------------------------------------------


def known_hosts_dir(settings: "Settings") -> Path:
    """Per-instance pinned host keys: ``<state_dir>/known_hosts``."""
    return Path(settings.state_dir).expanduser() / "known_hosts"


def ssh_runner(settings: "Settings", coordinates: dict[str, Any], *,
               sleep: Callable[[float], None] | None = None) -> SSHRunner:
    """A runner for an instance described by the launch step's outputs (or an instance
    row's data): instance_id, host, port, user, key_path, and -- for the first connection --
    host_key_publication. Without a publication on EC2 the console output is fetched."""
    missing = [k for k in ("instance_id", "host", "port", "user", "key_path") if not coordinates.get(k)]
    if missing:
        raise StepFailed(f"no SSH coordinates for the instance ({', '.join(missing)} missing)",
                         hint="run the launch step first")
    instance_id = str(coordinates["instance_id"])
    publication = coordinates.get("host_key_publication")
    target = SSHTarget(instance_id=instance_id, host=str(coordinates["host"]), port=int(coordinates["port"]),
                       user=str(coordinates["user"]), key_path=Path(str(coordinates["key_path"])),
                       known_hosts_dir=known_hosts_dir(settings), publication=publication)
    extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    runner = SSHRunner(target, **extra)
    if publication is None and not runner.host_keys.pinned(instance_id) and coordinates.get("provider") == "ec2":
        from console.steps.cloud import cloud_provider

        provider = cloud_provider(settings)
        console_output = getattr(provider, "console_output", None)
        if console_output is not None:
            runner = SSHRunner(dataclasses.replace(target, publication=console_output(instance_id)), **extra)
    return runner


def instance_coordinates(settings: "Settings", store: "StateStore", instance_id: str) -> dict[str, Any]:
    """SSH coordinates of an instance the state store knows (for `console exec` / `sync`)."""
    rows = [r for r in store.instances() if r.id == instance_id]
    if not rows:
        raise UsageError(f"no instance {instance_id!r} in the state store", hint="see `console instance list`")
    row = rows[-1]
    if row.state in ("terminated", "shutting-down"):
        raise UsageError(f"instance {instance_id} is {row.state}", hint="launch a new one")
    data = row.data
    out = {"instance_id": row.id, "host": data.get("public_address"), "port": data.get("port") or 22,
           "user": data.get("ssh_user"), "key_path": data.get("key_path"), "provider": row.provider}
    if data.get("host_key"):  # a static host's key from the config file, if the provider kept it
        out["host_key_publication"] = str(data["host_key"])
    from console.steps.cloud import uses_sandbox

    if uses_sandbox(settings) and row.provider == "ec2":
        from console.steps.cloud import sandbox_endpoints

        endpoint = sandbox_endpoints(settings, start=False).ssh_endpoint(row.id, wait_s=5.0)
        out.update(host=endpoint.host, port=endpoint.port,
                   host_key_publication=f"{endpoint.host_key}\n")
    return out


def artifact_store(settings: "Settings") -> S3ArtifactStore:
    """The S3 store the settings describe: the sandbox's moto, or AWS (s3_bucket required)."""
    import boto3

    from console.steps.cloud import sandbox_endpoints, uses_sandbox

    if uses_sandbox(settings):
        endpoints = sandbox_endpoints(settings)
        # moto accepts any credentials; these are made up per call, never stored.
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoints.moto_url, region_name=endpoints.region,
            aws_access_key_id="SANDBOX" + secrets.token_hex(6).upper(),
            aws_secret_access_key=secrets.token_urlsafe(30))
        return S3ArtifactStore(settings.s3_bucket or SANDBOX_BUCKET, client=client, region=endpoints.region)
    if not settings.s3_bucket:
        raise ConfigError("no S3 bucket for the artifacts", hint="set s3_bucket or SAGEMAKER_S3_BUCKET")
    kwargs: dict[str, Any] = {"endpoint_url": settings.aws_endpoint_url, "region_name": settings.aws_region}
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        kwargs.update(aws_access_key_id=settings.aws_access_key_id.get_secret_value(),
                      aws_secret_access_key=settings.aws_secret_access_key.get_secret_value())
    client = boto3.session.Session().client("s3", **kwargs)
    return S3ArtifactStore(settings.s3_bucket, client=client, region=settings.aws_region)


def _host_kind(settings: "Settings", coordinates: dict[str, Any]) -> str:
    from console.steps.cloud import uses_sandbox

    if coordinates.get("provider") == "static":
        return "static"
    return "sandbox" if uses_sandbox(settings) else "aws"


def _local_machine_id() -> str:
    from training.guard import machine_id

    return machine_id() or "unknown"


def _gpu_label(reading: HostReading) -> str:
    if reading.gpus:
        names = sorted({g.name for g in reading.gpus})
        return f"{len(reading.gpus)}x {', '.join(names)}"
    return "none - CPU only"


# --- steps ---------------------------------------------------------------------------------


@register
class Sync(Step):
    """Send code and features to the host, check it can train, and lease it for this run."""

    name = "sync"
    Params = SyncParams

    def plan(self, ctx: StepContext) -> str:
        return (f"send the training code and {len(ctx.params.symbols)} feature files to the instance "
                f"(changed files only), check its Python and GPU, and write the run's lease there")

    def run(self, ctx: StepContext) -> StepResult:
        from console.steps.checks import features_dir

        import training

        coordinates = ctx.output_of("launch")
        layout = RemoteLayout.of(coordinates)
        cache = Path(ctx.settings.state_dir).expanduser() / "sync-cache"
        features = features_dir(ctx.settings)
        # A feature file is a folder of parts now (an older one a single file): either counts.
        missing = [s for s in ctx.params.symbols if not (features / f"{s}.parquet").exists()]
        if missing:
            raise StepFailed(f"no feature file for {', '.join(missing)} in {features}",
                             hint="run the features step first")
        with ssh_runner(ctx.settings, coordinates) as runner:
            ctx.check_cancelled()
            code = sync_dir(runner, Path(training.__file__).parent, f"{layout.code}/training",
                            excludes=["*.egg-info/"], delete=True, cache_dir=cache, on_progress=ctx.log.info)
            ctx.log.info("code: %s", code.summary())
            ctx.check_cancelled()
            wanted = {f"{s}.parquet" for s in ctx.params.symbols}
            others = [p.name for p in features.iterdir() if p.name not in wanted]
            feats = sync_dir(runner, features, layout.features, excludes=[f"/{_escape_glob(n)}" for n in others],
                             delete=True, cache_dir=cache, on_progress=ctx.log.info)
            ctx.log.info("features: %s", feats.summary())
            ctx.check_cancelled()
            python = runner.run(["python3", "-c", PYTHON_CHECK], timeout_s=120, check=False)
            if python.exit_status != 0:
                raise StepFailed(f"the instance has no working python3 ({python.output[-200:].strip() or 'not found'})",
                                 hint="use an image with Python 3.10+ (the Deep Learning AMI has it)")
            ctx.log.info("host python: %s", python.output.replace("\n", "; "))
            reading = read_host(runner)
            gpu = _gpu_label(reading)
            kind = _host_kind(ctx.settings, coordinates)
            if kind != "sandbox" and not reading.gpus:
                raise StepFailed("the instance has no usable GPU (nvidia-smi found none)",
                                 hint="terminate it and launch a GPU instance type")
            fingerprint = runner.host_key.fingerprint if runner.host_key else ""
            lease = self._write_lease(ctx, runner, coordinates, kind, fingerprint, layout.lease)
        return StepResult.ok(
            f"code {code.files_sent} sent/{code.files_skipped} unchanged, features {feats.files_sent} sent/"
            f"{feats.files_skipped} unchanged ({feats.bytes_sent / (1 << 20):.1f} MiB); GPU: {gpu}; lease until {lease}",
            details={"code": code.summary(), "features": feats.summary(), "python": python.output,
                     "cpu_pct": reading.cpu_pct, "memory_total_mib": reading.memory_total_mib},
            remote_code_dir=layout.code, remote_features_dir=layout.features,
            remote_artifacts_dir=layout.artifacts, lease_path=layout.lease, lease_expires_at=lease,
            gpu=gpu, host_kind=kind, host_key_fingerprint=fingerprint)

    @staticmethod
    def _write_lease(ctx: StepContext, runner: SSHRunner, coordinates: dict[str, Any], kind: str,
                     fingerprint: str, path: str) -> str:
        from training.guard import Lease

        instance_id = str(coordinates["instance_id"])
        if kind == "static":
            # A static host proves itself by its machine id, read over the pinned link.
            instance_id = runner.run(["cat", "/etc/machine-id"], timeout_s=30).output.strip()
        hours = float(getattr(ctx.settings, "max_runtime_hours", 4.0))
        lease = Lease.issue(run_id=ctx.run_id, host_kind=kind, instance_id=instance_id,
                            host_key_fingerprint=fingerprint, operator_machine_id=_local_machine_id(),
                            valid_for=timedelta(hours=hours, minutes=30))
        runner.write_text(path, lease.to_json() + "\n", mode=0o600)
        return lease.expires_at


@register
class Upload(Step):
    """Bring the trained artifacts home from the host and store them as a new version."""

    name = "upload"
    Params = UploadParams

    def plan(self, ctx: StepContext) -> str:
        return (f"copy {RemoteLayout.of(ctx.output_of('launch')).artifacts} from the instance, then upload it "
                f"with sha256 and tags "
                f"as a new version and move models/latest.json to it")

    def run(self, ctx: StepContext) -> StepResult:
        coordinates = ctx.output_of("launch")
        synced = ctx.output_of("sync")
        remote_dir = ctx.output_of("train").get("remote_artifacts_dir") or synced.get(
            "remote_artifacts_dir") or RemoteLayout.of(coordinates).artifacts
        staging = Path(ctx.run_dir) / f"artifacts-{ctx.attempt}"
        if staging.exists():
            shutil.rmtree(staging)
        with ssh_runner(ctx.settings, coordinates) as runner:
            fetched = fetch_dir(runner, remote_dir, staging)
        if fetched.files_sent == 0:
            raise StepFailed(f"no artifacts in {remote_dir} on the instance", hint="did the train step finish?")
        ctx.log.info("fetched %s", fetched.summary())
        store = artifact_store(ctx.settings)
        store.ensure_bucket()
        tags = ArtifactTags(run_id=ctx.run_id, trained_date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                            gpu=_tag_safe(str(synced.get("gpu") or "unknown")))
        record = store.upload_version(staging, tags)
        ctx.emit("artifacts.uploaded", f"version {record.version}", version=record.version,
                 files=len(record.files), bytes=record.total_bytes)
        return StepResult.ok(
            f"uploaded {len(record.files)} files ({record.total_bytes / (1 << 20):.1f} MiB) as version "
            f"{record.version} to {store.describe()}; latest points at it",
            version=record.version, store=store.describe(), files=len(record.files))


@register
class Download(Step):
    """Fetch the run's version (or latest) from the store, verified, into the models directory."""

    name = "download"
    Params = DownloadParams

    def plan(self, ctx: StepContext) -> str:
        return "download the uploaded version (sha256 checked) into the local models directory"

    def run(self, ctx: StepContext) -> StepResult:
        from console.steps.checks import models_dir

        version = ctx.output_of("upload").get("version") or "latest"
        store = artifact_store(ctx.settings)
        dest = models_dir(ctx.settings)
        placed = place_version(store, version, dest, Path(ctx.settings.state_dir).expanduser() / "downloads")
        return StepResult.ok(f"downloaded version {placed['version']} ({placed['files']} files) into {dest}",
                             **placed)


def _escape_glob(name: str) -> str:
    return "".join("\\" + c if c in "*?[]\\!#" else c for c in name)


def _tag_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in " +-=._:/@" else "-" for c in text)[:256]


def place_version(store: S3ArtifactStore, version: str, models_root: Path, downloads: Path) -> dict[str, Any]:
    """Download ``version`` (verified) and copy its files into ``models_root``: model
    folders are added, champions and roster replaced; each file lands atomically."""
    local = store.download_version(version, downloads)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    models_root.mkdir(parents=True, exist_ok=True)
    # Model folders first, pointers (champions/, roster.json) last: a reader never sees
    # a champion whose model is not there yet.
    files.sort(key=lambda p: (not p.relative_to(local).as_posix().startswith("models/"), str(p)))
    for path in files:
        rel = path.relative_to(local).as_posix()
        target = safe_join(models_root, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file() and sha256_of(target) == sha256_of(path):
            continue
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)
    return {"version": local.name, "files": len(files), "models_dir": str(models_root)}
