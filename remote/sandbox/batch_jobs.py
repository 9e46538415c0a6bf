"""AWS Batch jobs the sandbox really runs: each child a local process with Batch's environment.

moto keeps compute environments, queues and job definitions, but runs jobs in Docker
(there is no Docker engine here) or, with Docker off, marks every child SUCCEEDED at
once, sets no ``AWS_BATCH_JOB_ARRAY_INDEX``, returns a child's ``arrayProperties`` as None
and accepts an array of size 1. `BatchRunner` answers the job verbs instead (the front,
`remote.sandbox.batch_front`, routes them here) and behaves as AWS documents:

- ``SubmitJob``: an array size outside 2..10,000 is refused (``ClientException``); each
  child ``<id>:<index>`` goes SUBMITTED -> PENDING -> RUNNABLE -> STARTING -> RUNNING ->
  SUCCEEDED | FAILED, at most ``max_running`` at once (the compute environment's vCPUs);
  the parent is PENDING until a child starts, RUNNING while any runs, and SUCCEEDED only
  when every child did.
- A child runs the job definition's ``command`` (with the submission's overrides; a
  leading ``python`` is this interpreter, the container image being this checkout; each
  ``Ref::name`` in it is the submission's ``parameters[name]``, else the definition's) in its
  own directory, with the definition's and the overrides' environment plus
  ``AWS_BATCH_JOB_ID``, ``AWS_BATCH_JOB_ARRAY_INDEX`` (array children only),
  ``AWS_BATCH_JOB_ATTEMPT``, ``AWS_BATCH_JQ_NAME`` and ``AWS_BATCH_CE_NAME``; its output
  goes to ``<root>/<job id>/<index>/attempt-<n>.log``.
- Each attempt is its own host, as on AWS: it gets ``RC_SOURCE_ADDRESS``, a loopback address
  of its own (127.2.x.y) that its market-data connections leave from, so the simulator
  counts the exchange's per-address rate limit against that child alone.
- ``retryStrategy``: ``attempts`` and ``evaluateOnExit`` (``onStatusReason``, ``onReason``,
  ``onExitCode`` globs; the first match decides RETRY or EXIT; no match retries while
  attempts remain). ``timeout.attemptDurationSeconds`` ends an attempt that runs longer.
- ``TerminateJob`` / ``CancelJob`` end the children (SIGTERM, then SIGKILL after 10 s),
  marking them FAILED with the reason. `reclaim` ends one child as a spot reclaim does
  (SIGKILL, ``statusReason`` "Host EC2 (instance ...) terminated."), so retry strategies
  that retry on it can be tested.
"""

from __future__ import annotations

import fnmatch
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

MAX_ARRAY = 10_000
_REF = re.compile(r"Ref::([A-Za-z0-9_]+)")
FINISHED = ("SUCCEEDED", "FAILED")


def host_address(n: int) -> str:
    """The ``n``-th sandbox host's loopback address (127.2.0.1, 127.2.0.2, ... 254 a block)."""
    return f"127.2.{(n // 254) % 256}.{n % 254 + 1}"


class BatchClientError(Exception):
    """What AWS answers as a ``ClientException`` (HTTP 400)."""


@dataclass
class Child:
    job_id: str
    index: int | None
    status: str = "RUNNABLE"
    attempt: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    started_at: float | None = None
    attempt_started: float = 0.0
    stopped_at: float | None = None
    reason: str = ""
    forced_reason: str = ""
    """Set when the sandbox ended the attempt (terminate, reclaim, timeout): its statusReason."""


@dataclass
class Job:
    job_id: str
    name: str
    queue: str
    queue_arn: str
    definition_arn: str
    command: list[str]
    environment: dict[str, str]
    array_size: int | None
    attempts: int
    evaluate_on_exit: list[dict[str, Any]]
    timeout_s: float | None
    tags: dict[str, str]
    created_at: float
    children: list[Child]
    region: str
    account: str
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:batch:{self.region}:{self.account}:job/{self.job_id}"

    def status(self) -> str:
        states = [c.status for c in self.children]
        if all(s in FINISHED for s in states):
            return "SUCCEEDED" if all(s == "SUCCEEDED" for s in states) else "FAILED"
        if any(s in ("STARTING", "RUNNING") for s in states) or any(s in FINISHED for s in states):
            return "RUNNING"
        return "PENDING" if self.array_size else "RUNNABLE"


class BatchRunner:
    """The job verbs of AWS Batch, run as local processes (see the module docstring)."""

    def __init__(self, root: Path, *, max_running: int = 2, base_env: Mapping[str, str] | None = None) -> None:
        self.root = Path(root)
        self.max_running = max(1, int(max_running))
        self.base_env = dict(base_env or {})
        """What every child gets besides its job's environment (where moto and S3 are, credentials)."""
        self.jobs: dict[str, Job] = {}
        self._hosts = 0
        """Attempts started so far: the next one's host address (`host_address`)."""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump_forever, name="sandbox-batch", daemon=True)
        self._thread.start()

    # --- the API -----------------------------------------------------------------------------

    def submit(
        self,
        request: Mapping[str, Any],
        *,
        definition: Mapping[str, Any],
        queue: Mapping[str, str],
        region: str,
        account: str,
    ) -> dict[str, Any]:
        array = request.get("arrayProperties") or {}
        size = array.get("size")
        if size is not None and not 2 <= int(size) <= MAX_ARRAY:
            raise BatchClientError(f"Array job size must be between 2 and {MAX_ARRAY:,} (got {size})")
        container = dict(definition.get("containerProperties") or {})
        overrides = dict(request.get("containerOverrides") or {})
        env = {e["name"]: e["value"] for e in container.get("environment") or ()}
        env.update({e["name"]: e["value"] for e in overrides.get("environment") or ()})
        retry = dict(request.get("retryStrategy") or definition.get("retryStrategy") or {})
        timeout = dict(request.get("timeout") or definition.get("timeout") or {})
        parameters = {**dict(definition.get("parameters") or {}), **dict(request.get("parameters") or {})}
        job_id = str(uuid.uuid4())
        indices: list[int | None] = list(range(int(size))) if size else [None]
        job = Job(
            job_id=job_id,
            name=str(request["jobName"]),
            queue=queue["name"],
            queue_arn=queue["arn"],
            definition_arn=str(definition.get("jobDefinitionArn", "")),
            command=_substitute(
                [str(c) for c in (overrides.get("command") or container.get("command") or [])], parameters
            ),
            environment=env,
            array_size=int(size) if size else None,
            attempts=max(1, min(10, int(retry.get("attempts") or 1))),
            evaluate_on_exit=list(retry.get("evaluateOnExit") or ()),
            timeout_s=float(timeout["attemptDurationSeconds"]) if timeout.get("attemptDurationSeconds") else None,
            tags={str(k): str(v) for k, v in dict(request.get("tags") or {}).items()},
            created_at=time.time(),
            children=[Child(f"{job_id}:{i}" if i is not None else job_id, i) for i in indices],
            region=region,
            account=account,
            parameters={str(k): str(v) for k, v in parameters.items()},
        )
        if not job.command:
            raise BatchClientError("the job definition and the submission name no command")
        with self._lock:
            self.jobs[job_id] = job
        return {"jobArn": job.arn, "jobName": job.name, "jobId": job_id}

    def describe(self, ids: list[str]) -> list[dict[str, Any]]:
        out = []
        with self._lock:
            for job_id in ids:
                parent_id, _, index = job_id.partition(":")
                job = self.jobs.get(parent_id)
                if job is None:
                    continue
                if index:
                    child = next((c for c in job.children if c.job_id == job_id), None)
                    if child is not None:
                        out.append(self._child_view(job, child))
                else:
                    out.append(self._job_view(job))
        return out

    def list(self, *, queue: str = "", array_job_id: str = "", status: str = "") -> list[dict[str, Any]]:
        with self._lock:
            if array_job_id:
                job = self.jobs.get(array_job_id)
                rows = [self._child_view(job, c) for c in job.children] if job and job.array_size else []
            else:
                rows = [self._job_view(j) for j in self.jobs.values() if queue in (j.queue, j.queue_arn)]
        if status:
            rows = [r for r in rows if r["status"] == status]
        keep = ("jobArn", "jobId", "jobName", "createdAt", "startedAt", "stoppedAt", "status", "statusReason")
        return [{k: r[k] for k in keep if r.get(k) is not None} | _array_summary(r) for r in rows]

    def terminate(self, job_id: str, reason: str) -> None:
        with self._lock:
            parent_id, _, index = job_id.partition(":")
            job = self.jobs.get(parent_id)
            if job is None:
                raise BatchClientError(f"Job {job_id} does not exist")
            for child in job.children:
                if (not index or child.job_id == job_id) and child.status not in FINISHED:
                    self._end(child, reason, final=True)

    def reclaim(self, child_id: str) -> None:
        """End one running child as a spot reclaim would (its retry strategy decides what follows)."""
        with self._lock:
            job = self.jobs.get(child_id.partition(":")[0])
            child = next((c for c in job.children if c.job_id == child_id), None) if job else None
            if child is None or child.status != "RUNNING":
                raise LookupError(f"no running Batch child {child_id}")
            self._end(child, f"Host EC2 (instance i-sandbox{child.index or 0:04d}) terminated.", kill=True)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for job in self.jobs.values():
                for child in job.children:
                    if child.proc is not None and child.proc.poll() is None:
                        _signal(child.proc, signal.SIGKILL)
        self._thread.join(timeout=5)

    # --- running children ------------------------------------------------------------------------

    def _pump_forever(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self._pump()
            except Exception:  # noqa: BLE001 - one bad child must not stop every other job
                import logging

                logging.getLogger("remote.sandbox.batch").exception("batch pump failed")

    def _pump(self) -> None:
        with self._lock:
            children = [(j, c) for j in self.jobs.values() for c in j.children]
            for job, child in children:
                if child.proc is not None:
                    self._poll(job, child)
            running = sum(1 for _, c in children if c.status in ("STARTING", "RUNNING"))
            for job, child in children:
                if running >= self.max_running:
                    break
                if child.status == "RUNNABLE":
                    self._start(job, child)
                    running += 1

    def _start(self, job: Job, child: Child) -> None:
        child.attempt += 1
        child.status, child.forced_reason = "STARTING", ""
        folder = self.root / job.job_id / str(child.index if child.index is not None else 0)
        folder.mkdir(parents=True, exist_ok=True)
        # The daemon's own environment less its AWS settings: a container sees only the job's.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.base_env)
        env.update(job.environment)
        env.update(
            {
                "AWS_BATCH_JOB_ID": child.job_id,
                "AWS_BATCH_JOB_ATTEMPT": str(child.attempt),
                "AWS_BATCH_JQ_NAME": job.queue,
                "AWS_BATCH_CE_NAME": "sandbox",
                "RC_SOURCE_ADDRESS": host_address(self._hosts),
            }
        )
        self._hosts += 1
        if child.index is not None:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(child.index)
        command = list(job.command)
        if command and command[0] in ("python", "python3"):
            command[0] = sys.executable
        log = open(folder / f"attempt-{child.attempt}.log", "wb")  # noqa: SIM115 - the child owns it
        try:
            child.proc = subprocess.Popen(
                command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            child.status, child.reason = "FAILED", f"CannotStartContainerError: {exc}"
            return
        finally:
            log.close()
        child.attempt_started = time.time()
        child.started_at = child.started_at or child.attempt_started
        child.status = "RUNNING"

    def _poll(self, job: Job, child: Child) -> None:
        assert child.proc is not None
        code = child.proc.poll()
        if code is None:
            if job.timeout_s and time.time() - child.attempt_started > job.timeout_s:
                self._end(child, "Job attempt duration exceeded timeout", final=True)
            return
        reason = child.forced_reason or ("Essential container in task exited" if code else "")
        child.attempts.append(
            {"container": {"exitCode": code, "reason": reason}, "startedAt": _ms(child.attempt_started)}
            | {"stoppedAt": _ms(time.time()), "statusReason": reason}
        )
        child.proc = None
        if code == 0 and not child.forced_reason:
            child.status, child.reason, child.stopped_at = "SUCCEEDED", "", time.time()
            return
        if child.forced_reason.startswith("final:"):
            child.status, child.reason, child.stopped_at = "FAILED", child.forced_reason[6:], time.time()
            return
        if child.attempt < job.attempts and _retry(job.evaluate_on_exit, reason, code):
            child.status = "RUNNABLE"
            return
        child.status, child.reason, child.stopped_at = "FAILED", reason or f"exit code {code}", time.time()

    def _end(self, child: Child, reason: str, *, final: bool = False, kill: bool = False) -> None:
        child.forced_reason = ("final:" if final else "") + reason
        if child.proc is None:
            child.status, child.reason, child.stopped_at = "FAILED", reason, time.time()
            return
        if kill:
            _signal(child.proc, signal.SIGKILL)
            return
        _signal(child.proc, signal.SIGTERM)
        proc = child.proc
        threading.Timer(10.0, _kill_if_alive, (proc,)).start()

    # --- views ------------------------------------------------------------------------------------

    def _job_view(self, job: Job) -> dict[str, Any]:
        status = job.status()
        started = [c.started_at for c in job.children if c.started_at]
        stopped = [c.stopped_at for c in job.children if c.stopped_at]
        view: dict[str, Any] = {
            "jobArn": job.arn,
            "jobName": job.name,
            "jobId": job.job_id,
            "jobQueue": job.queue_arn,
            "jobDefinition": job.definition_arn,
            "status": status,
            "createdAt": _ms(job.created_at),
            "tags": dict(job.tags),
            "parameters": dict(job.parameters),
            "retryStrategy": {"attempts": job.attempts, "evaluateOnExit": job.evaluate_on_exit},
            "container": {
                "command": job.command,
                "environment": [{"name": k, "value": "***"} for k in job.environment],
            },
        }
        if started:
            view["startedAt"] = _ms(min(started))
        if status in FINISHED and stopped:
            view["stoppedAt"] = _ms(max(stopped))
        if job.array_size:
            summary: dict[str, int] = {}
            for c in job.children:
                summary[c.status] = summary.get(c.status, 0) + 1
            view["arrayProperties"] = {"size": job.array_size, "statusSummary": summary}
            failed = [c for c in job.children if c.status == "FAILED"]
            if status == "FAILED" and failed:
                view["statusReason"] = f"{len(failed)} of {job.array_size} children failed: {failed[0].reason}"
        else:
            view |= self._attempt_fields(job.children[0])
        return view

    def _child_view(self, job: Job, child: Child) -> dict[str, Any]:
        view = self._job_view(job) | {"jobId": child.job_id, "jobArn": f"{job.arn}:{child.index}"}
        view["status"] = child.status
        view["arrayProperties"] = {"index": child.index}
        view.pop("statusReason", None)
        return view | self._attempt_fields(child)

    @staticmethod
    def _attempt_fields(child: Child) -> dict[str, Any]:
        fields: dict[str, Any] = {"attempts": list(child.attempts)}
        if child.started_at:
            fields["startedAt"] = _ms(child.started_at)
        if child.status in FINISHED and child.stopped_at:
            fields["stoppedAt"] = _ms(child.stopped_at)
        if child.reason:
            fields["statusReason"] = child.reason
        return fields


def _substitute(command: list[str], parameters: Mapping[str, Any]) -> list[str]:
    """``Ref::name`` placeholders replaced by the job's parameters, as Batch does (unknown ones kept)."""
    return [_REF.sub(lambda m: str(parameters.get(m.group(1), m.group(0))), part) for part in command]


def _retry(rules: list[dict[str, Any]], reason: str, code: int) -> bool:
    for rule in rules:
        checks = [
            ("onStatusReason", reason),
            ("onReason", reason),
            ("onExitCode", str(code)),
        ]
        if all(fnmatch.fnmatchcase(value, str(rule[key])) for key, value in checks if key in rule):
            return str(rule.get("action", "")).upper() == "RETRY"
    return True


def _array_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    props = row.get("arrayProperties")
    if not props:
        return {}
    return {"arrayProperties": {k: v for k, v in props.items() if k in ("size", "index")}}


def _kill_if_alive(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        _signal(proc, signal.SIGKILL)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _ms(t: float) -> int:
    return int(t * 1000)
