"""The ``batch`` backend: one AWS Batch array job per submission, each child a shard of units.

Past one machine (seed runbooks 003 and 004): the units (coins) are dealt round-robin over
``JobSpec.array_size`` children through a shard manifest in S3; each child runs the
container entry point ``python -m training.container batch-child`` (`training.container.batch`)
and uploads its models as each unit completes. The service starts and stops its own
machines (`MANAGES_INSTANCES`), retries a child whose spot host was reclaimed
(`RECOVERS_SPOT`: ``retryStrategy.evaluateOnExit`` retries on "Host EC2*", exits on anything
else) and runs arrays (`RUNS_ARRAYS`).

    prepare   the bucket; a spot compute environment (min and desired vCPUs 0: nothing runs,
              nothing is billed, until a job is queued), a job queue, a job definition; the
              inputs uploaded under ``runs/<run>/inputs/`` (an input given as an ``s3://``
              URL in the backend's bucket, e.g. the feature files a fetch job's children
              uploaded, is referenced; one in any other bucket is refused)
    submit    (``params["task"] == "fetch"``) a fetch job instead: each child runs
              ``batch-fetch`` and fetches its own coins (`training.container.batch_fetch`);
              `collect_fetched` reads what they made
    submit    ``params["input_sha256"]`` ({channel: {unit: sha256}}) goes into the manifest: each
              child checks a unit's downloaded input against it before training
    submit    idempotent per (run, job name, work): a job of that name tagged with the run and
              given the same work (``rc-work``: `batch_work.work_fingerprint`) is reused; one
              still going with other work is terminated as superseded
    follow    the children's ``events/<index>.jsonl`` and the array's state, until it ends
    collect   every finished unit's folder, each sha256 checked against its ``sha256.txt``,
              champions and roster rebuilt from the verdicts, uploaded to the store as a version
    release   nothing: Batch holds the machines (``()``)

Settings (``[backends.batch]``): ``bucket`` (else the artifact store's), ``queue`` (rc-engine), ``compute_environment``,
``job_definition``, ``image``, ``max_vcpus`` (16), ``vcpus`` per child (1), ``memory_mb`` (2048),
``features_dir`` and ``encoder_dir`` when the spec names no inputs, ``poll_s`` (1.0).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from remote.backends.base import (
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
from remote.backends.batch_work import in_bucket, shards, work_fingerprint
from remote.errors import ProviderError, StorageError

CHILD_COMMAND = ("python", "-m", "training.container", "batch-child")
FETCH_COMMAND = ("python", "-m", "training.container", "batch-fetch")
"""A fetch job's children (``params["task"] == "fetch"``): each fetches its own coins' candles."""
_PHASES = {
    "SUBMITTED": JobPhase.PENDING,
    "PENDING": JobPhase.PENDING,
    "RUNNABLE": JobPhase.PENDING,
    "STARTING": JobPhase.STARTING,
    "RUNNING": JobPhase.RUNNING,
    "SUCCEEDED": JobPhase.SUCCEEDED,
    "FAILED": JobPhase.FAILED,
}
SHARED_CHANNELS = ("encoder",)
"""Input channels every child reads whole (the rest are per unit: ``<channel>/<UNIT>.parquet``)."""
RETRY_ON_RECLAIM = [
    {"onStatusReason": "Host EC2*", "action": "RETRY"},
    {"onReason": "*", "action": "EXIT"},
]


class BatchBackend:
    """AWS Batch array jobs (`remote.backends.base.TrainingBackend`)."""

    name: ClassVar[str] = "batch"
    capabilities: ClassVar[frozenset[BackendCapability]] = frozenset(
        {BackendCapability.MANAGES_INSTANCES, BackendCapability.RECOVERS_SPOT, BackendCapability.RUNS_ARRAYS}
    )

    def __init__(self, context: BackendContext) -> None:
        if context.aws is None:
            raise ProviderError("the batch backend needs AWS (or the sandbox's moto); none is configured")
        self.context = context
        self.options = dict(context.options)
        # Its own bucket, else the artifact store's (the sandbox profile has one).
        self.bucket = str(self.options.get("bucket") or getattr(context.store, "bucket", "") or "")
        self.queue = str(self.options.get("queue") or "rc-engine")
        self.environment = str(self.options.get("compute_environment") or "rc-engine-spot")
        self.definition = str(self.options.get("job_definition") or "rc-engine-child")
        self.poll_s = float(self.options.get("poll_s", 1.0))
        self._clients: dict[str, Any] = {}
        self._tokens: dict[str, str] = {}

    # --- AWS ------------------------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        from remote.providers.aws_client import make_client

        if service not in self._clients:
            assert self.context.aws is not None
            self._clients[service] = make_client(service, self.context.aws())
        return self._clients[service]

    def _call(self, service: str, operation: str, **kwargs: Any) -> Any:
        from remote.providers.aws_client import call

        assert self.context.aws is not None
        client = self._client(service)
        return call(self.context.aws(), operation, getattr(client, operation), **kwargs)

    # --- prepare ----------------------------------------------------------------------------------

    def prepare(self, plan: RunPlan) -> Prepared:
        if not self.bucket:
            raise StorageError("the batch backend needs a bucket ([backends.batch] bucket)")
        self._ensure_bucket()
        self._ensure_queue()
        inputs = {**self._default_inputs(), **dict(plan.inputs)}
        referenced = {channel for channel, where in inputs.items() if in_bucket(where, self.bucket)}  # all, first
        uploaded = {
            channel: where if channel in referenced else self._upload_input(plan.run_id, channel, Path(where))
            for channel, where in inputs.items()
        }
        return Prepared(
            f"batch queue {self.queue} on {self.environment} (spot), inputs in s3://{self.bucket}/runs/{plan.run_id}/",
            {"queue": self.queue, "inputs": uploaded},
        )

    def _default_inputs(self) -> dict[str, Path | str]:
        out: dict[str, Path | str] = {}
        for channel in ("features", "encoder"):
            where = self.options.get(f"{channel}_dir")
            if where:
                out[channel] = Path(str(where))
        return out

    def _ensure_bucket(self) -> None:
        try:
            self._call("s3", "head_bucket", Bucket=self.bucket)
        except ProviderError:
            self._call("s3", "create_bucket", Bucket=self.bucket)

    def _ensure_queue(self) -> None:
        found = self._call("batch", "describe_job_queues", jobQueues=[self.queue])["jobQueues"]
        if found:
            return
        envs = self._call("batch", "describe_compute_environments", computeEnvironments=[self.environment])
        if not envs["computeEnvironments"]:
            self._create_environment()
        self._call(
            "batch",
            "create_job_queue",
            jobQueueName=self.queue,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": self.environment}],
            tags={"managed-by": "retrain-console"},
        )
        self._call(
            "batch",
            "register_job_definition",
            jobDefinitionName=self.definition,
            type="container",
            containerProperties={
                "image": str(self.options.get("image") or "retrain-console:latest"),
                "command": list(CHILD_COMMAND),
                "resourceRequirements": [
                    {"type": "VCPU", "value": str(self.options.get("vcpus", 1))},
                    {"type": "MEMORY", "value": str(self.options.get("memory_mb", 2048))},
                ],
                "environment": [{"name": "OMP_NUM_THREADS", "value": str(self.options.get("vcpus", 1))}],
            },
            retryStrategy={"attempts": 3, "evaluateOnExit": RETRY_ON_RECLAIM},
            tags={"managed-by": "retrain-console"},
        )

    def _create_environment(self) -> None:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "batch.amazonaws.com"}}
            ],
        }
        role = f"{self.environment}-service"
        try:
            arn = self._call("iam", "get_role", RoleName=role)["Role"]["Arn"]
        except ProviderError:
            arn = self._call("iam", "create_role", RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
                "Arn"
            ]
        profile = f"{self.environment}-instance"
        try:
            profile_arn = self._call("iam", "get_instance_profile", InstanceProfileName=profile)["InstanceProfile"][
                "Arn"
            ]
        except ProviderError:
            profile_arn = self._call("iam", "create_instance_profile", InstanceProfileName=profile)["InstanceProfile"][
                "Arn"
            ]
            self._call("iam", "add_role_to_instance_profile", InstanceProfileName=profile, RoleName=role)
        subnets = [s["SubnetId"] for s in self._call("ec2", "describe_subnets")["Subnets"]][:3]
        groups = self._call("ec2", "describe_security_groups", GroupNames=["default"])["SecurityGroups"]
        self._call(
            "batch",
            "create_compute_environment",
            computeEnvironmentName=self.environment,
            type="MANAGED",
            state="ENABLED",
            serviceRole=arn,
            computeResources={
                "type": "SPOT",
                "allocationStrategy": "SPOT_CAPACITY_OPTIMIZED",
                "minvCpus": 0,
                "desiredvCpus": 0,
                "maxvCpus": int(self.options.get("max_vcpus", 16)),
                "instanceTypes": ["optimal"],
                "subnets": subnets,
                "securityGroupIds": [g["GroupId"] for g in groups],
                "instanceRole": profile_arn,
                "tags": {"managed-by": "retrain-console"},
            },
            tags={"managed-by": "retrain-console"},
        )

    def _upload_input(self, run_id: str, channel: str, path: Path) -> str:
        if not path.exists():
            raise StorageError(f"input {channel!r} is missing: {path}")
        prefix = f"runs/{run_id}/inputs/{channel}/"
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            rel = f.name if path.is_file() else f.relative_to(path).as_posix()
            self._call("s3", "upload_file", Filename=str(f), Bucket=self.bucket, Key=prefix + rel)
        return f"s3://{self.bucket}/{prefix}"

    # --- submit -------------------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobRef:
        existing = self._find(spec)
        if existing is not None:
            return existing
        shared = set(self.options.get("shared_channels") or SHARED_CHANNELS)
        given = dict(spec.inputs or self._default_inputs())
        prefixes = {
            channel: str(where)
            if in_bucket(where, self.bucket)
            else f"s3://{self.bucket}/runs/{spec.run_id}/inputs/{channel}/"
            for channel, where in given.items()
        }
        task = str(spec.params.get("task") or "train")
        prefix = self._prefix(spec)
        token = secrets.token_urlsafe(24)
        params = {
            k: v for k, v in spec.params.items() if k not in ("costs", "seed", "schedule", "task", "input_sha256")
        }
        sums = dict(spec.params.get("input_sha256") or {})
        manifest = {
            "task": task,
            "job_name": spec.name,
            "rc_job_token_sha256": hashlib.sha256(f"{spec.name}:{token}".encode()).hexdigest(),
            "family": spec.family,
            "params": params,
            "costs": dict(spec.params.get("costs") or {}),
            "seed": int(spec.params.get("seed") or 0),
            "array_size": spec.array_size,
            "shards": shards(spec.units, spec.array_size),
            "inputs": {
                channel: {
                    "prefix": where,
                    "per_unit": channel not in shared,
                    **({"sha256": dict(sums[channel])} if channel in sums else {}),
                }
                for channel, where in prefixes.items()
            },
            "out": f"s3://{self.bucket}/{prefix}out/",
        }
        self._clear(prefix + "out/")  # a failed job's children's results must not pass for the new ones
        self._call("s3", "put_object", Bucket=self.bucket, Key=prefix + "manifest.json", Body=json.dumps(manifest))
        env = {
            "RC_BATCH_MANIFEST": f"s3://{self.bucket}/{prefix}manifest.json",
            "RC_ARRAY_SIZE": str(spec.array_size),
        }
        command = FETCH_COMMAND if task == "fetch" else None
        return self._submit_job(spec, prefix, token, self.definition, env, command=command)

    def _clear(self, prefix: str) -> None:
        """Delete every object under ``prefix`` in the bucket."""
        pages = self._call("s3", "list_objects_v2", Bucket=self.bucket, Prefix=prefix)
        while True:
            keys = [{"Key": item["Key"]} for item in pages.get("Contents") or ()]
            if keys:
                self._call("s3", "delete_objects", Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
            if not pages.get("IsTruncated"):
                return
            token = pages["NextContinuationToken"]
            pages = self._call("s3", "list_objects_v2", Bucket=self.bucket, Prefix=prefix, ContinuationToken=token)

    def _submit_job(
        self,
        spec: JobSpec,
        prefix: str,
        token: str,
        definition: str,
        env: Mapping[str, str],
        *,
        command: tuple[str, ...] | None = None,
        **extra: Any,
    ) -> JobRef:
        """Submit ``spec`` as one job (an array job with more than one child) of ``definition``: ``env``
        and the job's name and token in its container's environment, ``command`` instead of the
        definition's when given, ``extra`` added to the request (a definition's ``parameters``);
        reclaimed spot children retried, the run's tags on it."""
        env = {**env, "RC_JOB_NAME": spec.name, "RC_JOB_TOKEN": token}
        overrides: dict[str, Any] = {"environment": [{"name": k, "value": v} for k, v in env.items()]}
        if command:
            overrides["command"] = list(command)
        request: dict[str, Any] = {
            "jobName": spec.name,
            "jobQueue": self.queue,
            "jobDefinition": definition,
            **extra,
            "containerOverrides": overrides,
            "retryStrategy": {"attempts": 3, "evaluateOnExit": RETRY_ON_RECLAIM},
            "timeout": {"attemptDurationSeconds": max(60, int(spec.max_runtime_s))},
            "tags": {
                "run-id": spec.run_id,
                "managed-by": "retrain-console",
                "rc-work": work_fingerprint(spec),
                **dict(spec.tags),
            },  # fmt: skip
        }
        if spec.array_size > 1:
            request["arrayProperties"] = {"size": spec.array_size}
        job = self._call("batch", "submit_job", **request)
        return self._ref(spec, job["jobId"], prefix)

    @staticmethod
    def _prefix(spec: JobSpec) -> str:
        """Where a job's manifest and children's output live: one folder per (name, work), so a
        job given other work never clears or overwrites another's results."""
        return f"runs/{spec.run_id}/jobs/{spec.name}/{work_fingerprint(spec)}/"

    def _ref(self, spec: JobSpec, job_id: str, prefix: str) -> JobRef:
        data = {"bucket": self.bucket, "prefix": prefix, "units": list(spec.units), "array_size": spec.array_size}
        return JobRef(self.name, spec.name, job_id, spec.run_id, data)

    def _find(self, spec: JobSpec) -> JobRef | None:
        """This run's job of ``spec``'s name and work, to reuse; None when there is none. A job of
        that name given other work that is still going is terminated first: it would bill beside
        the new one (and, fetching, share its hosts' rate limit) for results nobody will read."""
        work = work_fingerprint(spec)
        found = None
        for job in self._run_jobs(spec):
            tags, status = job.get("tags", {}), job.get("status")
            if "rc-work" not in tags:  # submitted before jobs carried their work: reused as then
                if status != "FAILED" and found is None:
                    found = self._ref(spec, job["jobId"], f"runs/{spec.run_id}/jobs/{spec.name}/")
            elif tags["rc-work"] == work:
                # A failed job is not reused: a step's retry submits it again (same name, new children).
                if status != "FAILED" and found is None:
                    found = self._ref(spec, job["jobId"], self._prefix(spec))
            elif status not in ("SUCCEEDED", "FAILED"):
                reason = f"superseded: the run submitted {spec.name} again with other work"
                self._call("batch", "terminate_job", jobId=job["jobId"], reason=reason)
                self.context.log.info("terminated Batch job %s (%s)", job["jobId"], reason)
        return found

    def _run_jobs(self, spec: JobSpec) -> list[dict[str, Any]]:
        """Every job of ``spec``'s name tagged with its run, described, newest first."""
        rows = self._call(
            "batch", "list_jobs", jobQueue=self.queue, filters=[{"name": "JOB_NAME", "values": [spec.name]}]
        )["jobSummaryList"]
        ids = [row["jobId"] for row in rows]
        jobs = []
        for start in range(0, len(ids), 100):  # describe_jobs takes at most 100 ids
            jobs += self._call("batch", "describe_jobs", jobs=ids[start : start + 100])["jobs"]
        ours = (j for j in jobs if j.get("tags", {}).get("run-id") == spec.run_id)
        return sorted(ours, key=lambda j: j.get("createdAt", 0), reverse=True)

    # --- follow, status, cancel -------------------------------------------------------------------------

    def status(self, ref: JobRef) -> JobStatus:
        jobs = self._call("batch", "describe_jobs", jobs=[ref.job_id])["jobs"]
        if not jobs:
            raise ProviderError(f"Batch knows no job {ref.job_id} ({ref.name})", code="JobNotFound")
        job = jobs[0]
        phase = _PHASES.get(str(job.get("status")), JobPhase.PENDING)
        summary = dict((job.get("arrayProperties") or {}).get("statusSummary") or {})
        children = {_PHASES.get(k, JobPhase.PENDING).value: int(v) for k, v in summary.items() if int(v)}
        started, stopped = job.get("startedAt"), job.get("stoppedAt")
        return JobStatus(
            ref,
            phase,
            secondary=str(job.get("status", "")),
            reason=str(job.get("statusReason", "")) if phase is JobPhase.FAILED else "",
            started_at=started / 1000 if started else None,
            ended_at=stopped / 1000 if stopped else None,
            training_s=(stopped - started) / 1000 if started and stopped else None,
            children=children,
        )

    def follow(self, ref: JobRef, on_event: EventSink, *, should_stop: Callable[[], bool]) -> JobStatus:
        seen: dict[int, int] = {}
        last_state = ""
        while True:
            status = self.status(ref)
            state = f"{status.phase.value} {json.dumps(dict(status.children), sort_keys=True)}"
            if state != last_state:
                on_event(JobEvent(ref.name, "state", state, data={"children": dict(status.children)}))
                last_state = state
            self._relay_events(ref, seen, on_event)
            if status.phase.finished or should_stop():
                self._relay_events(ref, seen, on_event)
                return status
            time.sleep(self.poll_s)

    def _relay_events(self, ref: JobRef, seen: dict[int, int], on_event: EventSink) -> None:
        for index in range(int(ref.data.get("array_size", 1))):
            raw = self._get(ref, f"out/events/{index}.jsonl")
            if raw is None:
                continue
            lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
            for line in lines[seen.get(index, 0) :]:
                kind = {"round": "epoch"}.get(line["kind"], line["kind"])
                message = f"{line.get('unit') or 'child ' + str(index)}: {line['kind']}"
                on_event(JobEvent(ref.name, kind, message, unit=str(line.get("unit", "")), data=line))
            seen[index] = len(lines)

    def _get(self, ref: JobRef, key: str) -> bytes | None:
        try:
            body = self._call("s3", "get_object", Bucket=ref.data["bucket"], Key=ref.data["prefix"] + key)
        except ProviderError:
            return None
        return body["Body"].read()

    def cancel(self, ref: JobRef) -> JobStatus:
        self._call("batch", "terminate_job", jobId=ref.job_id, reason="cancelled by the console")
        status = self.status(ref)
        if status.phase.finished:
            return status
        return JobStatus(ref, JobPhase.STOPPING, secondary=status.secondary, children=status.children)

    # --- collect, release ---------------------------------------------------------------------------------

    def collect(self, ref: JobRef, dest: Path) -> Collected:
        if self.context.store is None:
            raise StorageError("no artifact store to collect into; set s3_bucket (or use the sandbox profile)")
        status = self.status(ref)
        if status.phase is not JobPhase.SUCCEEDED and not status.children.get(JobPhase.SUCCEEDED.value):
            raise StorageError(f"job {ref.name} is {status.phase.value}: nothing finished to collect")
        self._gather(ref, Path(dest))
        from remote.storage import ArtifactTags

        store = self.context.store
        store.ensure_bucket()
        tags = ArtifactTags(run_id=ref.run_id, trained_date=time.strftime("%Y-%m-%d", time.gmtime()), gpu="none")
        record = store.upload_version(Path(dest), tags)
        return Collected(record.version, len(record.files), record.total_bytes, store.describe())

    def collect_fetched(self, ref: JobRef, dest: Path) -> tuple[dict[str, dict[str, Any]], str]:
        """A fetch job's outcome: each coin's row with its encoder moments in ``dest``
        (`batch_collect.gather_fetched`), and the ``s3://`` prefix of the feature files the
        children uploaded (a later job's ``features`` input, referenced, not copied)."""
        from remote.backends.batch_collect import gather_fetched

        units = [str(u) for u in ref.data.get("units", ())]
        rows = gather_fetched(lambda key: self._get(ref, key), int(ref.data.get("array_size", 1)), units, Path(dest))
        return rows, f"s3://{ref.data['bucket']}/{ref.data['prefix']}out/features/"

    def _gather(self, ref: JobRef, dest: Path) -> dict[str, Any]:
        """The finished units' folders into ``dest``, each file checked (`batch_collect.gather`)."""
        from remote.backends.batch_collect import gather

        return gather(lambda key: self._get(ref, key), int(ref.data.get("array_size", 1)), dest)

    def release(self, run_id: str) -> tuple[str, ...]:
        return ()
