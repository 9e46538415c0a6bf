"""The sandbox's SageMaker training jobs, run for real (moto only records them as Completed).

Each job runs the container entry point (``python -m training.container train``) as a local
process in its own /opt/ml tree under ``<sandbox>/sagemaker/<job>/opt/ml``, the way SageMaker
runs the image on its instance:

    Starting      the tree is made: hyperparameters.json, the channels downloaded from the
                  sandbox S3, the checkpoint prefix copied into /opt/ml/checkpoints
    Downloading   (the channels)
    Training      the process runs; every output line goes to CloudWatch Logs
                  (``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-1-<created>``), and
                  /opt/ml/checkpoints is copied to the checkpoint prefix after each epoch
    Uploading     /opt/ml/model packed as ``<output>/<job>/output/model.tar.gz``
    Completed     or Failed (FailureReason from /opt/ml/output/failure), or Stopped
                  (on request, or MaxRuntimeExceeded / MaxWaitTimeExceeded)

A managed-spot job can be interrupted on demand (`SageMakerJobs.interrupt`): SIGTERM, the
checkpoints copied off, secondary states Interrupted -> Restarting, and a fresh tree resumed
from the checkpoint prefix. ``TrainingTimeInSeconds`` is the seconds the process ran;
``BillableTimeInSeconds`` the same for on-demand jobs and the sandbox's managed-spot share
(`remote.sandbox.prices.SANDBOX_MANAGED_SPOT_BILLED_FRACTION`) for spot jobs.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from remote.sandbox.prices import SANDBOX_MANAGED_SPOT_BILLED_FRACTION

log = logging.getLogger("remote.sandbox.sagemaker")

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
STOP_GRACE_S = 10.0
"""SIGTERM to SIGKILL (SageMaker gives 120 s; the sandbox's jobs are small)."""
REPO_ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("Completed", "Failed", "Stopped")


@dataclass
class Job:
    """One training job as DescribeTrainingJob shows it (plus what runs it)."""

    name: str
    arn: str
    request: dict[str, Any]
    created: float = field(default_factory=time.time)
    status: str = "InProgress"
    secondary: str = "Starting"
    transitions: list[dict[str, Any]] = field(default_factory=list)
    failure: str = ""
    started: float | None = None
    ended: float | None = None
    training_s: float = 0.0
    model_uri: str = ""
    stop_as: str = ""
    """Why the runner is stopping it: Stopped, MaxRuntimeExceeded, MaxWaitTimeExceeded ('' = not)."""
    interrupt: bool = False
    proc: subprocess.Popen[bytes] | None = None
    modified: float = field(default_factory=time.time)

    @property
    def spot(self) -> bool:
        return bool(self.request.get("EnableManagedSpotTraining"))

    def describe(self) -> dict[str, Any]:
        r = self.request
        billable = self.training_s
        if self.spot:
            billable = self.training_s * SANDBOX_MANAGED_SPOT_BILLED_FRACTION
        out: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary,
            "SecondaryStatusTransitions": self.transitions,
            "HyperParameters": r.get("HyperParameters", {}),
            "AlgorithmSpecification": r.get("AlgorithmSpecification", {}),
            "RoleArn": r.get("RoleArn", ""),
            "InputDataConfig": r.get("InputDataConfig", []),
            "OutputDataConfig": r.get("OutputDataConfig", {}),
            "ResourceConfig": r.get("ResourceConfig", {}),
            "StoppingCondition": r.get("StoppingCondition", {}),
            "EnableManagedSpotTraining": self.spot,
            "CreationTime": self.created,
            "LastModifiedTime": self.modified,
            "TrainingTimeInSeconds": int(math.ceil(self.training_s)),
            "BillableTimeInSeconds": int(math.ceil(billable)),
        }
        for key in ("CheckpointConfig", "Environment"):
            if key in r:
                out[key] = r[key]
        if self.failure:
            out["FailureReason"] = self.failure
        if self.started is not None:
            out["TrainingStartTime"] = self.started
        if self.ended is not None:
            out["TrainingEndTime"] = self.ended
        if self.model_uri:
            out["ModelArtifacts"] = {"S3ModelArtifacts": self.model_uri}
        return out

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in self.describe().items() if k in _SUMMARY_KEYS}
        return out


_SUMMARY_KEYS = ("TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingEndTime", "LastModifiedTime",
                 "TrainingJobStatus", "SecondaryStatus")  # fmt: skip


class SageMakerJobs:
    """The sandbox's training jobs: created, run, stopped, interrupted (see the module docstring)."""

    def __init__(self, root: Path, clients: Callable[[str], Any]) -> None:
        self.root = root
        self.clients = clients
        """service -> a boto3 client on the sandbox's own moto (S3, IAM, Logs)."""
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    # --- the API's verbs ---------------------------------------------------------------

    def create(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.name] = job
        self._secondary(job, "Starting", "Preparing the instances for training")
        threading.Thread(target=self._run, args=(job,), name=f"sagemaker-{job.name}", daemon=True).start()

    def get(self, name: str) -> Job | None:
        with self.lock:
            return self.jobs.get(name)

    def all(self) -> list[Job]:
        with self.lock:
            return list(self.jobs.values())

    def stop(self, job: Job, why: str = "Stopped") -> None:
        """Stop a job (StopTrainingJob; or the runner itself past a deadline)."""
        if job.status in TERMINAL or job.stop_as:
            return
        job.stop_as = why
        job.status = "Stopping"
        self._secondary(job, "Stopping", "Stopping the training job")
        self._signal(job, signal.SIGTERM)

    def interrupt(self, job: Job) -> None:
        """A managed-spot interruption: the process is ended, the job restarts from its checkpoints."""
        if not job.spot:
            raise ValueError(f"{job.name} is not a managed spot job")
        if job.status != "InProgress" or job.secondary not in ("Training", "Downloading", "Starting"):
            raise ValueError(f"{job.name} is {job.status}/{job.secondary}, not training")
        job.interrupt = True
        self._signal(job, signal.SIGTERM)

    def shutdown(self) -> None:
        for job in self.all():
            if job.status not in TERMINAL:
                job.stop_as = job.stop_as or "Stopped"
                self._signal(job, signal.SIGKILL)

    # --- running a job -------------------------------------------------------------------

    def _run(self, job: Job) -> None:
        try:
            self._run_attempts(job)
        except Exception as exc:  # the job fails with the reason; the daemon goes on
            log.exception("sandbox SageMaker job %s failed", job.name)
            self._end(job, "Failed", f"ClientError: {type(exc).__name__}: {exc}"[:1000])

    def _run_attempts(self, job: Job) -> None:
        base = self.root / job.name
        attempt = 0
        while True:
            attempt += 1
            opt = base / f"attempt-{attempt}" / "opt" / "ml"
            self._secondary(job, "Downloading", "Downloading input data")
            self._prepare_tree(job, opt)
            if job.stop_as:
                return self._end(job, "Stopped", "")
            self._secondary(job, "Training", "Training image download completed. Training in progress.")
            job.started = job.started or time.time()
            code = self._train(job, opt, attempt)
            self._sync_checkpoints(job, opt)
            if job.interrupt and not job.stop_as:
                job.interrupt = False
                self._secondary(job, "Interrupted", "The spot instance was interrupted")
                self._secondary(job, "Restarting", "Restarting the job from its checkpoints")
                continue
            break
        if job.stop_as in ("MaxRuntimeExceeded", "MaxWaitTimeExceeded"):
            limit = "MaxRuntimeInSeconds" if job.stop_as == "MaxRuntimeExceeded" else "MaxWaitTimeInSeconds"
            return self._end(job, "Stopped", f"Training job reached its {limit} and was stopped", job.stop_as)
        if job.stop_as:
            return self._end(job, "Stopped", "")
        if code != 0:
            failure = opt / "output" / "failure"
            why = failure.read_text().strip() if failure.is_file() else ""
            return self._end(job, "Failed", f"AlgorithmError: {why or f'the training process exited {code}'}")
        self._secondary(job, "Uploading", "Uploading generated training model")
        job.model_uri = self._upload_model(job, opt / "model")
        self._end(job, "Completed", "")

    def _prepare_tree(self, job: Job, opt: Path) -> None:
        import json

        s3 = self.clients("s3")
        for sub in ("input/config", "model", "output", "checkpoints"):
            (opt / sub).mkdir(parents=True, exist_ok=True)
        hp = {str(k): str(v) for k, v in (job.request.get("HyperParameters") or {}).items()}
        (opt / "input/config/hyperparameters.json").write_text(json.dumps(hp))
        for channel in job.request.get("InputDataConfig") or []:
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            got = _download_prefix(s3, uri, opt / "input/data" / channel["ChannelName"])
            if not got:
                raise ValueError(f"No S3 objects found under S3 URL {uri!r} (channel {channel['ChannelName']})")
        checkpoint = (job.request.get("CheckpointConfig") or {}).get("S3Uri")
        if checkpoint:
            _download_prefix(s3, checkpoint, opt / "checkpoints")

    def _train(self, job: Job, opt: Path, attempt: int) -> int:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "HOME")}
        env.update({str(k): str(v) for k, v in (job.request.get("Environment") or {}).items()})
        env.update(
            PYTHONPATH=str(REPO_ROOT),
            PYTHONUNBUFFERED="1",
            OMP_NUM_THREADS="1",
            RC_OPT_ML=str(opt),
            RC_SANDBOX_ROOT=str(opt.parent.parent) + os.sep,
            TRAINING_JOB_NAME=job.name,
            TRAINING_JOB_ARN=job.arn,
        )
        stream = f"{job.name}/algo-1-{int(job.created)}"
        logs = _LogStream(self.clients("logs"), stream)
        proc = subprocess.Popen(
            [sys.executable, "-m", "training.container", "train"],
            cwd=opt,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        job.proc = proc
        if attempt > 1:
            logs.put(f"[sandbox] attempt {attempt}: resuming from the checkpoint prefix")
        pump = threading.Thread(target=self._pump, args=(job, proc, logs, opt), daemon=True)
        pump.start()
        began = time.monotonic()
        before = job.training_s
        stopping_since: float | None = None
        if job.stop_as or job.interrupt:  # asked for while the tree was being made
            self._signal(job, signal.SIGTERM)
        while proc.poll() is None:
            time.sleep(0.1)
            job.training_s = before + (time.monotonic() - began)
            self._check_deadlines(job)
            if (job.stop_as or job.interrupt) and stopping_since is None:
                stopping_since = time.monotonic()
            if stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE_S:
                self._signal(job, signal.SIGKILL)
        job.training_s = before + (time.monotonic() - began)
        pump.join(timeout=5)
        job.proc = None
        return int(proc.returncode)

    def _check_deadlines(self, job: Job) -> None:
        cond = job.request.get("StoppingCondition") or {}
        runtime = cond.get("MaxRuntimeInSeconds")
        wait = cond.get("MaxWaitTimeInSeconds")
        if runtime and job.training_s > float(runtime):
            self.stop(job, "MaxRuntimeExceeded")
        elif wait and time.time() - job.created > float(wait):
            self.stop(job, "MaxWaitTimeExceeded")

    def _pump(self, job: Job, proc: subprocess.Popen[bytes], logs: "_LogStream", opt: Path) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            logs.put(line)
            if line.startswith('{"event": "epoch"'):
                try:
                    self._sync_checkpoints(job, opt)
                except Exception:  # a missed copy is made up at the next epoch or at the end
                    log.warning("checkpoint copy of %s failed", job.name, exc_info=True)

    def _sync_checkpoints(self, job: Job, opt: Path) -> None:
        uri = (job.request.get("CheckpointConfig") or {}).get("S3Uri")
        if not uri:
            return
        bucket, prefix = _split(uri)
        s3 = self.clients("s3")
        for path in sorted((opt / "checkpoints").rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                key = f"{prefix.rstrip('/')}/{path.relative_to(opt / 'checkpoints').as_posix()}"
                s3.put_object(Bucket=bucket, Key=key.lstrip("/"), Body=path.read_bytes())

    def _upload_model(self, job: Job, model: Path) -> str:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for path in sorted(model.rglob("*")):
                tar.add(path, arcname=path.relative_to(model).as_posix(), recursive=False)
        out = str((job.request.get("OutputDataConfig") or {}).get("S3OutputPath", "")).rstrip("/")
        bucket, prefix = _split(out)
        key = f"{prefix}/{job.name}/output/model.tar.gz".lstrip("/")
        self.clients("s3").put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
        return f"s3://{bucket}/{key}"

    # --- state ------------------------------------------------------------------------

    def _secondary(self, job: Job, state: str, message: str) -> None:
        now = time.time()
        if job.transitions and "EndTime" not in job.transitions[-1]:
            job.transitions[-1]["EndTime"] = now
        job.transitions.append({"Status": state, "StartTime": now, "StatusMessage": message})
        job.secondary = state
        job.modified = now

    def _end(self, job: Job, status: str, failure: str, secondary: str | None = None) -> None:
        self._secondary(job, secondary or status, failure or f"Training job {status.lower()}")
        job.transitions[-1]["EndTime"] = time.time()
        job.failure = failure
        job.ended = time.time()
        job.status = status
        job.modified = job.ended
        shutil.rmtree(self.root / job.name, ignore_errors=True)

    @staticmethod
    def _signal(job: Job, sig: int) -> None:
        proc = job.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass


class _LogStream:
    """One CloudWatch Logs stream of the job (group and stream created on first use)."""

    def __init__(self, logs: Any, stream: str) -> None:
        self.logs, self.stream = logs, stream
        self._made = False

    def put(self, line: str) -> None:
        if not self._made:
            for call, kwargs in (
                (self.logs.create_log_group, {"logGroupName": LOG_GROUP}),
                (self.logs.create_log_stream, {"logGroupName": LOG_GROUP, "logStreamName": self.stream}),
            ):
                try:
                    call(**kwargs)
                except self.logs.exceptions.ResourceAlreadyExistsException:
                    pass
            self._made = True
        event = {"timestamp": int(time.time() * 1000), "message": line[:200_000]}
        self.logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=self.stream, logEvents=[event])


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def _download_prefix(s3: Any, uri: str, dest: Path) -> int:
    """Every object under the prefix into ``dest`` (relative names kept, nothing outside it)."""
    bucket, prefix = _split(uri)
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            rel = item["Key"][len(prefix) :].lstrip("/") or Path(item["Key"]).name
            target = (dest / rel).resolve()
            if not target.is_relative_to(dest.resolve()):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            count += 1
    return count
