"""The ``sagemaker`` backend: SageMaker training jobs on managed spot, over boto3.

(The SageMaker Python SDK cannot be installed beside our pins; boto3 is all it takes.)
On the sandbox the same calls go to moto behind the sandbox's SageMaker front, which runs
the jobs for real (`remote.sandbox.sagemaker_jobs`)::

    prepare(plan)   role and bucket set (else: run `console infra deploy`); the units' feature
                    files uploaded under the run's prefix with their sha256 (unchanged: kept)
    submit(spec)    CreateTrainingJob (`request`); a job of that name for this run is found and
                    followed, never started twice; a name taken by another run is refused
    follow(ref)     DescribeTrainingJob and the job's CloudWatch log stream every half second:
                    the container's JSON lines become epoch / done / error events
    status/cancel   DescribeTrainingJob / StopTrainingJob; Stopped, MaxRuntimeExceeded,
                    MaxWaitTimeExceeded and Failed are never done (each with its reason)
    collect(ref)    model.tar.gz downloaded, unpacked (nothing outside the folder, no links),
                    uploaded to the artifact store as a verified version
    release(run)    nothing: SageMaker holds no instance of ours (`MANAGES_INSTANCES`)

Spot interruptions are the service's business (`RECOVERS_SPOT`): it restarts the job and
the container resumes from /opt/ml/checkpoints, which SageMaker keeps in the checkpoint prefix.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ClassVar

from remote.backends.base import (
    GUARD_REFUSED,
    BackendCapability,
    BackendContext,
    Collected,
    EventSink,
    JobEvent,
    JobPhase,
    JobRef,
    JobSpec,
    JobStatus,
    Prepared,
    RunPlan,
)
from remote.backends.sagemaker.logs import LOG_GROUP, JobLog
from remote.backends.sagemaker.request import (
    BackendNotConfigured,
    SageMakerOptions,
    config_text,
    create_request,
    instance_type_of,
    new_token,
)
from remote.errors import ProviderError, StorageError

POLL_S = 0.5
_STARTING = ("Starting", "Downloading", "Restarting", "Pending", "LaunchingMLInstances", "PreparingTrainingStack")
_OVER_LIMIT = ("MaxRuntimeExceeded", "MaxWaitTimeExceeded")


class SageMakerBackend:
    """Training as SageMaker jobs (see the module docstring)."""

    name: ClassVar[str] = "sagemaker"
    capabilities: ClassVar[frozenset[BackendCapability]] = frozenset(
        {BackendCapability.MANAGES_INSTANCES, BackendCapability.RECOVERS_SPOT}
    )

    def __init__(self, context: BackendContext) -> None:
        if context.aws is None:
            raise BackendNotConfigured(f"the {self.name} backend needs AWS (BackendContext.aws)")
        self.context = context
        self.options = SageMakerOptions.from_mapping(context.options)
        self.log = context.log
        self._clients: dict[str, Any] = {}

    # --- the verbs --------------------------------------------------------------------

    def prepare(self, plan: RunPlan) -> Prepared:
        uploaded = self._upload_features(plan.run_id, plan.units, folder=plan.inputs.get("features"))
        where = self.options.uri(f"{self.options.run_prefix(plan.run_id)}/features/")
        return Prepared(
            f"SageMaker jobs on {self.options.instance_type} ({'managed spot' if self.options.spot else 'on demand'})"
            f"; {uploaded} feature file(s) in {where}",
            {"features": where, "role_arn": self.options.role_arn, "bucket": self.options.bucket},
        )

    def submit(self, spec: JobSpec) -> JobRef:
        found = self._describe(spec.name, missing_ok=True)
        if found is not None:
            owner = (found.get("HyperParameters") or {}).get("rc_run_id")
            if owner != spec.run_id:
                raise ProviderError(
                    f"a SageMaker training job named {spec.name} already exists (run {owner or 'unknown'}); "
                    "job names are unique per account and region: use another run id",
                    code="ResourceInUse",
                )
            self.log.info("following SageMaker job %s, submitted earlier (%s)", spec.name, found["TrainingJobStatus"])
            return self._ref(spec, found["TrainingJobArn"])
        channels = {"features": self._channel_for(spec), "config": self._config_channel(spec)}
        request = create_request(spec, self.options, new_token(), channels)
        try:
            arn = self._call("CreateTrainingJob", self._sm.create_training_job, **request)["TrainingJobArn"]
        except ProviderError as exc:
            if exc.code != "ResourceInUse":
                raise
            return self.submit(spec)  # started by a resumed step between our look and our call
        self.log.info("submitted SageMaker job %s (%s)", spec.name, instance_type_of(spec, self.options))
        return self._ref(spec, arn)

    def follow(self, ref: JobRef, on_event: EventSink, *, should_stop: Callable[[], bool]) -> JobStatus:
        job_log = JobLog(self._client("logs"), ref.name)
        secondary_seen = 0
        while True:
            described = self._describe(ref.name)
            transitions = described.get("SecondaryStatusTransitions") or []
            for t in transitions[secondary_seen:]:
                text = f"SageMaker {t.get('Status')}: {t.get('StatusMessage', '')}"
                on_event(JobEvent(ref.name, "log", text, unit=",".join(ref.data.get("units") or ()),
                                  data={"secondary": t.get("Status")}))  # fmt: skip
            secondary_seen = len(transitions)
            for event in job_log.read():
                on_event(event)
            status = self._status_of(ref, described)
            if status.phase.finished:
                for event in job_log.read():  # the lines written as it ended
                    on_event(event)
                return status
            if should_stop() or self.context.should_stop():
                return JobStatus(ref, status.phase, status.secondary, "stopped following; the job goes on")
            time.sleep(POLL_S)

    def status(self, ref: JobRef) -> JobStatus:
        return self._status_of(ref, self._describe(ref.name))

    def cancel(self, ref: JobRef) -> JobStatus:
        now = self.status(ref)
        if now.phase.finished:
            return now
        try:
            self._call("StopTrainingJob", self._sm.stop_training_job, TrainingJobName=ref.name)
        except ProviderError as exc:
            if exc.code != "ValidationException":  # it ended between the look and the stop
                raise
        return self.status(ref)

    def collect(self, ref: JobRef, dest: Path) -> Collected:
        from remote.storage import ArtifactTags

        store = self.context.store
        if store is None:
            raise StorageError("no artifact store to collect into; set s3_bucket (or use the sandbox profile)")
        described = self._describe(ref.name)
        status = self._status_of(ref, described)
        if status.phase is not JobPhase.SUCCEEDED:
            raise StorageError(
                f"SageMaker job {ref.name} is {described['TrainingJobStatus']}"
                f"{': ' + status.reason if status.reason else ''}; it has no model to collect"
            )
        # One job per symbol: the version holds every finished job of the run, so the download
        # step (which takes the last version) has them all; rosters and summaries are merged.
        jobs = [d for d in self._run_jobs(ref.run_id) if d["TrainingJobName"] != ref.name] + [described]
        staging = (self.context.work_dir or Path(".")) / ref.run_id / "sagemaker"
        files = 0
        for job in jobs:
            uri = str((job.get("ModelArtifacts") or {}).get("S3ModelArtifacts") or "")
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            archive = staging / f"{job['TrainingJobName']}.model.tar.gz"
            archive.parent.mkdir(parents=True, exist_ok=True)
            self._call("GetObject", self._client("s3").download_file, Bucket=bucket, Key=key, Filename=str(archive))
            unpacked = staging / job["TrainingJobName"]
            shutil.rmtree(unpacked, ignore_errors=True)
            count = unpack_model(archive, unpacked)
            if not count:
                raise StorageError(f"{uri} holds no files; did the job write /opt/ml/model?")
            files += merge_model_dir(unpacked, Path(dest))
            archive.unlink(missing_ok=True)
            shutil.rmtree(unpacked, ignore_errors=True)
        store.ensure_bucket()
        tags = ArtifactTags(
            run_id=ref.run_id,
            trained_date=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            gpu=str(ref.data.get("instance_type") or self.options.instance_type),
        )
        record = store.upload_version(Path(dest), tags)
        return Collected(record.version, len(record.files), record.total_bytes, store.describe())

    def release(self, run_id: str) -> tuple[str, ...]:
        return ()

    # --- listing (the console's cloud-list, cost and watchdog) --------------------------

    def jobs(self, name_contains: str = "") -> list[dict[str, Any]]:
        """The account's training jobs (newest first), each as ListTrainingJobs summarises it."""
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"NameContains": name_contains} if name_contains else {}
        while True:
            page = self._call("ListTrainingJobs", self._sm.list_training_jobs, **kwargs)
            found += page.get("TrainingJobSummaries", [])
            if not page.get("NextToken"):
                return found
            kwargs["NextToken"] = page["NextToken"]

    def job_report(self, name: str) -> dict[str, Any]:
        """What ``console train cloud-status`` shows: state, secondary state, the last epoch line,
        training and billable seconds and the managed-spot saving ``(1 - billable/training) x 100``."""
        d = self._describe(name)
        last = ""
        for event in JobLog(self._client("logs"), name).read():
            if event.kind == "epoch":
                last = event.message
        training, billable = d.get("TrainingTimeInSeconds"), d.get("BillableTimeInSeconds")
        return {
            "job": name,
            "status": d.get("TrainingJobStatus"),
            "secondary": d.get("SecondaryStatus"),
            "failure_reason": d.get("FailureReason") or "",
            "epoch_line": last,
            "training_s": training,
            "billable_s": billable,
            "saving_pct": spot_saving_pct(training, billable),
            "instance_type": (d.get("ResourceConfig") or {}).get("InstanceType"),
            "spot": bool(d.get("EnableManagedSpotTraining")),
            "model": (d.get("ModelArtifacts") or {}).get("S3ModelArtifacts") or "",
            "run_id": (d.get("HyperParameters") or {}).get("rc_run_id") or "",
        }

    def _run_jobs(self, run_id: str) -> list[dict[str, Any]]:
        """The run's completed jobs (by name, then by the ``rc_run_id`` hyperparameter), by name."""
        found = []
        for summary in self.jobs(name_contains=run_id):
            if summary.get("TrainingJobStatus") != "Completed":
                continue
            d = self._describe(summary["TrainingJobName"])
            if (d.get("HyperParameters") or {}).get("rc_run_id") == run_id:
                found.append(d)
        return sorted(found, key=lambda d: str(d["TrainingJobName"]))

    def describe(self, name: str) -> dict[str, Any]:
        """DescribeTrainingJob of ``name`` (unknown: `ProviderError` with code ``NotFound``)."""
        return self._describe(name)

    # --- helpers ----------------------------------------------------------------------

    @property
    def _sm(self) -> Any:
        return self._client("sagemaker")

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            from remote.providers.aws_client import make_client

            assert self.context.aws is not None
            self._clients[service] = make_client(service, self.context.aws())
        return self._clients[service]

    def _call(self, operation: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        from remote.providers.aws_client import call

        assert self.context.aws is not None
        return call(self.context.aws(), operation, fn, **kwargs)

    def _describe(self, name: str, *, missing_ok: bool = False) -> Any:
        try:
            return self._call("DescribeTrainingJob", self._sm.describe_training_job, TrainingJobName=name)
        except ProviderError as exc:
            if exc.code == "ValidationException" and "not found" in str(exc).lower():
                if missing_ok:
                    return None
                raise ProviderError(f"no SageMaker training job named {name}", code="NotFound") from None
            raise

    def _ref(self, spec: JobSpec, arn: str) -> JobRef:
        data = {"arn": arn, "family": spec.family, "units": list(spec.units),
                "instance_type": instance_type_of(spec, self.options), "log_group": LOG_GROUP,
                "spot": bool(spec.spot and self.options.spot)}  # fmt: skip
        return JobRef(self.name, spec.name, spec.name, spec.run_id, data)

    def _status_of(self, ref: JobRef, d: dict[str, Any]) -> JobStatus:
        state, secondary = str(d.get("TrainingJobStatus")), str(d.get("SecondaryStatus") or "")
        reason = " ".join(str(d.get("FailureReason") or "").split())
        training = d.get("TrainingTimeInSeconds")
        billable = d.get("BillableTimeInSeconds")

        def status(phase: JobPhase, second: str = secondary, why: str = "") -> JobStatus:
            return JobStatus(
                ref,
                phase,
                second,
                why,
                started_at=_epoch(d.get("TrainingStartTime")),
                ended_at=_epoch(d.get("TrainingEndTime")),
                training_s=float(training) if training is not None else None,
                billable_s=float(billable) if billable is not None else None,
            )

        if state == "Completed":
            return status(JobPhase.SUCCEEDED)
        if state == "Failed":
            if "refusing to train locally" in reason:
                return status(JobPhase.FAILED, GUARD_REFUSED, reason)
            return status(JobPhase.FAILED, why=f"SageMaker job {ref.name} failed: {reason}")
        if state == "Stopped":
            if secondary in _OVER_LIMIT:
                return status(
                    JobPhase.FAILED,
                    why=f"SageMaker stopped job {ref.name}: {secondary}" + (f" ({reason})" if reason else ""),
                )
            return status(JobPhase.STOPPED, why=f"SageMaker job {ref.name} was stopped")
        if state == "Stopping":
            return status(JobPhase.STOPPING)
        return status(JobPhase.STARTING if secondary in _STARTING else JobPhase.RUNNING)

    def _upload_features(
        self, run_id: str, units: tuple[str, ...], prefix: str = "", folder: Path | str | None = None
    ) -> int:
        """Each unit's feature file (a folder of parts and a manifest) under ``prefix``, from
        ``folder`` (the plan's or job's ``features`` input) or the features folder; the count uploaded."""
        if isinstance(folder, str) and folder.startswith("s3://"):
            raise BackendNotConfigured(f"the {self.name} backend uploads features from a folder, not {folder}")
        if not (folder or self.options.features_dir):
            raise BackendNotConfigured(f"the {self.name} backend has no features folder to upload from")
        s3 = self._client("s3")
        prefix = prefix or f"{self.options.run_prefix(run_id)}/features"
        count = 0
        for unit in units:
            path = Path(folder or self.options.features_dir) / f"{unit}.parquet"
            if not path.exists():
                raise StorageError(f"no feature file for {unit} at {path}; run the features step first")
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                key = f"{prefix}/{unit}.parquet" + ("" if file == path else f"/{file.relative_to(path).as_posix()}")
                count += self._put_once(s3, key, file.read_bytes())
        return count

    def _put_once(self, s3: Any, key: str, body: bytes) -> int:
        """Upload unless the object there has the same sha256; 1 when uploaded."""
        digest = hashlib.sha256(body).hexdigest()
        try:
            head = s3.head_object(Bucket=self.options.bucket, Key=key)
            if head.get("Metadata", {}).get("sha256") == digest:
                return 0
        except s3.exceptions.ClientError:
            pass
        self._call("PutObject", s3.put_object, Bucket=self.options.bucket, Key=key, Body=body,
                   Metadata={"sha256": digest})  # fmt: skip
        return 1

    def _channel_for(self, spec: JobSpec) -> str:
        """The job's own ``features`` prefix: only its units' files (each sha256 recorded)."""
        job_prefix = f"{self.options.run_prefix(spec.run_id)}/jobs/{spec.name}/features"
        self._upload_features(spec.run_id, spec.units, job_prefix, folder=spec.inputs.get("features"))
        return self.options.uri(job_prefix + "/")

    def _config_channel(self, spec: JobSpec) -> str:
        prefix = f"{self.options.run_prefix(spec.run_id)}/jobs/{spec.name}/config"
        self._put_once(self._client("s3"), f"{prefix}/train-config.json", config_text(spec).encode())
        return self.options.uri(prefix + "/")


def unpack_model(archive: Path, dest: Path) -> int:
    """``model.tar.gz`` into ``dest``: regular files and folders only, none outside ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    count = 0
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if not target.is_relative_to(root) or not (member.isfile() or member.isdir()):
                raise StorageError(f"{archive.name} holds {member.name!r}, which is not a plain file inside it")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
            count += 1
    return count


def spot_saving_pct(training_s: Any, billable_s: Any) -> float | None:
    """SageMaker's managed-spot saving, ``(1 - billable / training) x 100`` (None before any training)."""
    if not training_s or billable_s is None:
        return None
    return round((1.0 - float(billable_s) / float(training_s)) * 100.0, 1)


def merge_model_dir(source: Path, dest: Path) -> int:
    """One job's /opt/ml/model into ``dest``: model folders and champion pointers copied,
    ``roster.json`` symbols and ``summary.json`` rows merged with what ``dest`` has; files added."""
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source)
        target = dest / rel
        if rel.as_posix() in ("roster.json", "summary.json") and target.is_file():
            old, new = json.loads(target.read_text()), json.loads(path.read_text())
            merged: dict[str, Any]
            if rel.name == "roster.json":
                merged = {"symbols": {**old.get("symbols", {}), **new.get("symbols", {})},
                          "updated_at": max(str(old.get("updated_at") or ""), str(new.get("updated_at") or ""))}  # fmt: skip
            else:
                merged = {"succeeded": int(old.get("succeeded", 0)) + int(new.get("succeeded", 0)),
                          "failed": int(old.get("failed", 0)) + int(new.get("failed", 0)),
                          "seconds": float(old.get("seconds", 0)) + float(new.get("seconds", 0)),
                          "symbols": [*old.get("symbols", []), *new.get("symbols", [])]}  # fmt: skip
            target.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        count += 1
    return count


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    return value.timestamp() if isinstance(value, datetime) else float(value)


__all__ = ["BackendNotConfigured", "SageMakerBackend", "spot_saving_pct"]
