"""The ``ssh`` backend: training on a GPU host the console leased, over SSH.

Today's EC2-spot-over-SSH path behind the `TrainingBackend` verbs. The console leases the
host (launch, sync, lease: its instances service, behind the `HostPool` it hands over in
`BackendContext.hosts`); this backend runs the job there and brings the results back::

    prepare(plan)   the run's host, launched if it has none and made ready (code, features, lease)
    submit(spec)    the scheduler, detached on the host (`command`); a job already running
                    there is followed, never started twice; a finished one is restarted
                    (the scheduler's ledger skips units that finished, the rest resume)
    follow(ref)     its log, line by line, reconnecting on drops (no line lost or repeated);
                    each epoch's checkpoint copied off the host, verified, into the store
                    (`shelf`); a host lost mid-job replaced through the pool, the job
                    resumed there from the copied checkpoints (`RECOVERS_SPOT`)
    status/cancel   one look / TERM to the job's process group
    collect(ref)    the host's artifact root, fetched and uploaded as a verified store version
    release(run)    every host of the run terminated, confirmed (the pool's instances service)

One submission trains every unit of the job with the scheduler's concurrency
(`RUNS_ARRAYS`). Modules: `hosts` (the pool, the layout), `command` (what runs), `follow`
(the log and the host watch), `results` (the summary read back), `shelf` (checkpoints).
"""

from __future__ import annotations

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
from remote.backends.ssh.command import CONFIG_NAME, config_text, schedule_of, scheduler_command
from remote.backends.ssh.follow import HostWatch, LineReader, Seen, Stopped
from remote.backends.ssh.hosts import HostLost, HostPool, RemoteLayout, SshHost
from remote.backends.ssh.results import failed_units, first_reason, read_summary, unit_results
from remote.backends.ssh.shelf import CheckpointShelf
from remote.errors import HostKeyUnknown, HostUnreachable, StorageError
from remote.ssh import JobState, SSHRunner

REACHABLE_WITHIN_S = 300.0
"""How long a replacement host may take to answer SSH (on EC2 its host key is published
in the console output only minutes after launch)."""


class SshBackend:
    """Training on the run's leased host over SSH (see the module docstring)."""

    name: ClassVar[str] = "ssh"
    capabilities: ClassVar[frozenset[BackendCapability]] = frozenset(
        {BackendCapability.RECOVERS_SPOT, BackendCapability.RUNS_ARRAYS}
    )

    def __init__(self, context: BackendContext) -> None:
        if not isinstance(context.hosts, HostPool):
            raise ValueError("the ssh backend needs the run's host pool (BackendContext.hosts)")
        self.context = context
        self.hosts: HostPool = context.hosts
        self.log = context.log
        self.seen = Seen()
        self._shelf: CheckpointShelf | None = None
        self._shelf_looked = False

    # --- the verbs --------------------------------------------------------------------------

    def prepare(self, plan: RunPlan) -> Prepared:
        host = self.hosts.acquire()
        return Prepared(
            f"training on {host.instance_id} ({host.gpu})",
            {"instance_id": host.instance_id, "root": host.layout.root, "gpu": host.gpu},
        )

    def submit(self, spec: JobSpec) -> JobRef:
        host = self.hosts.current()
        if self.hosts.lost_reason(host) is not None:
            return self._ref(spec, host)  # nothing to start there: `follow` replaces the host (or says it is lost)
        force = bool(schedule_of(spec).get("force"))
        with self._runner(host, self._sleep) as runner:
            host = self._start(spec, host, runner, force=force, restart=True)
        return self._ref(spec, host)

    def follow(self, ref: JobRef, on_event: EventSink, *, should_stop: Callable[[], bool]) -> JobStatus:
        spec = _spec_of(ref)
        fresh = False
        while True:
            host = self.hosts.current()
            try:
                return self._follow_on(host, ref, spec, on_event, should_stop, fresh=fresh)
            except Stopped:
                return JobStatus(ref, JobPhase.RUNNING, reason="stopped following; the job goes on")
            except HostLost as lost:
                why = lost.why
            except HostUnreachable:  # SSH gave up: lost only if the provider says so
                quiet = self.hosts.lost_reason(host)
                if quiet is None:
                    raise
                why = quiet
            done = self.hosts.replacements()
            on_event(
                JobEvent(
                    ref.name,
                    "state",
                    f"instance {host.instance_id} lost during training: {why}",
                    data={
                        "what": "lost",
                        "instance_id": host.instance_id,
                        "reason": why,
                        "relaunches": done,
                        "max_relaunches": self.hosts.max_replacements,
                    },
                )
            )
            if not self.hosts.can_replace() or done >= self.hosts.max_replacements:
                hint = (
                    "raise max_relaunches in the checklist, then `console resume`"
                    if self.hosts.can_replace()
                    else "bring the host back, then `console resume`"
                )
                return JobStatus(
                    ref,
                    JobPhase.FAILED,
                    secondary="host-lost",
                    reason=(
                        f"instance {host.instance_id} was lost during training ({why}) after {done} replacement(s); {hint}"
                    ),
                )
            self.hosts.replace(host, why)
            fresh = True  # the replacement starts from the stored checkpoints, never from scratch

    def status(self, ref: JobRef) -> JobStatus:
        host = self.hosts.current()
        with self._runner(host, self._sleep) as runner:
            found = runner.job_status(ref.job_id)
        if found.state is JobState.RUNNING:
            return JobStatus(ref, JobPhase.RUNNING, secondary=f"pid {found.pid}")
        if found.state is JobState.ABSENT:
            return JobStatus(ref, JobPhase.PENDING, secondary=f"not started on {host.instance_id}")
        if found.state is JobState.EXITED and found.exit_code == 0:
            return JobStatus(ref, JobPhase.SUCCEEDED)
        return JobStatus(
            ref,
            JobPhase.FAILED,
            reason=f"the job {found.state.value}"
            + (f" with exit code {found.exit_code}" if found.exit_code is not None else ""),
        )

    def cancel(self, ref: JobRef) -> JobStatus:
        host = self.hosts.current()
        with self._runner(host, self._sleep) as runner:
            found = runner.cancel_job(ref.job_id, "TERM")
        phase = JobPhase.STOPPED if found.finished else JobPhase.STOPPING
        return JobStatus(ref, phase, secondary=found.state.value)

    def collect(self, ref: JobRef, dest: Path) -> Collected:
        """The host's artifact root, fetched into ``dest`` and uploaded to the store as a new
        version (sha256 of every file recorded; ``models/latest.json`` moved last)."""
        from remote.storage import ArtifactTags
        from remote.sync import fetch_dir

        if self.context.store is None:
            raise StorageError("no artifact store to collect into; set s3_bucket (or use the sandbox profile)")
        host = self.hosts.current()
        remote_dir = str(ref.data.get("artifacts") or host.layout.artifacts)
        with self._runner(host, self._sleep) as runner:
            fetched = fetch_dir(runner, remote_dir, dest)
        if fetched.files_sent == 0:
            raise StorageError(f"no artifacts in {remote_dir} on {host.instance_id}; did the train step finish?")
        self.log.info("fetched %s", fetched.summary())
        store = self.context.store
        store.ensure_bucket()
        tags = ArtifactTags(
            run_id=ref.run_id, trained_date=datetime.now(timezone.utc).strftime("%Y-%m-%d"), gpu=_tag_safe(host.gpu)
        )
        record = store.upload_version(Path(dest), tags)
        return Collected(record.version, len(record.files), record.total_bytes, store.describe())

    def release(self, run_id: str) -> tuple[str, ...]:
        return self.hosts.release()

    # --- on one host ------------------------------------------------------------------------

    def _ref(self, spec: JobSpec, host: SshHost) -> JobRef:
        data = {
            "instance_id": host.instance_id,
            "root": host.layout.root,
            "artifacts": host.layout.artifacts,
            "family": spec.family,
            "units": list(spec.units),
            "params": dict(spec.params),
        }
        return JobRef(self.name, spec.name, spec.name, spec.run_id, data)

    def _start(self, spec: JobSpec, host: SshHost, runner: SSHRunner, *, force: bool, restart: bool) -> SshHost:
        """Start the job on ``host`` unless it runs there already; the host as it now is."""
        status = runner.job_status(spec.name)
        if status.state is JobState.RUNNING:
            self.log.info("following the training job already running on %s (pid %s)", runner.target.where, status.pid)
            return host
        if status.finished and not restart:
            return host  # ended on this host: the follow reads how
        shelf = self._checkpoint_shelf(spec.run_id)
        if status.state is JobState.ABSENT:
            # A host that never ran this job: a replacement (or the first start). It gets the
            # code, data and lease if it lacks them, and the checkpoints kept off the host.
            host = self.hosts.ready(host, runner)
            if shelf is not None and not force:
                shelf.restore_to_host(runner, host.layout.artifacts, list(spec.units))
        if force and shelf is not None:
            shelf.forget(list(spec.units))
        runner.write_text(f"{host.layout.code}/{CONFIG_NAME}", config_text(spec))
        command = scheduler_command(spec, host.layout, force=force)
        # A finished job from an earlier attempt is replaced: the scheduler's ledger skips
        # units that finished and resumes the rest from their checkpoints.
        runner.run_detached(command, spec.name, cwd=host.layout.code, replace=status.finished)
        self.log.info("started %s on %s", " ".join(command), runner.target.where)
        return host

    def _follow_on(
        self,
        host: SshHost,
        ref: JobRef,
        spec: JobSpec,
        on_event: EventSink,
        should_stop: Callable[[], bool],
        *,
        fresh: bool,
    ) -> JobStatus:
        """Follow (and on a fresh host first start) the job on one host until it ends."""
        watch = HostWatch(self.hosts, host, on_event, ref.name, should_stop=should_stop)
        watch.check(force=True)  # a host already gone is replaced before any SSH to it
        runner = self._until_reachable(host, watch, should_stop) if fresh else self.hosts.runner(host, sleep=watch)
        reader = LineReader(ref.name, on_event, self.seen, self._checkpoint_shelf(ref.run_id), host.layout.artifacts)
        with runner:
            watch.runner = reader.runner = runner
            host = self._start(spec, host, runner, force=False, restart=False)
            result = runner.follow_job(
                ref.job_id, reader, on_reconnect=lambda n: self.log.warning("SSH dropped; reconnected (%d)", n)
            )
            final = result.status
            if not (final.state is JobState.EXITED and final.exit_code == 0):
                # Killed by a signal or gone without an exit code: give the provider a moment to
                # say whether the host itself is going (spot interruption, shutdown).
                signalled = final.state is not JobState.EXITED or (final.exit_code or 0) >= 128
                why = watch.wait_for_loss(20.0 if signalled else 0.0)
                if why is not None:
                    raise HostLost(host.instance_id, why)
            summary = read_summary(runner, host.layout.artifacts)
            for event in unit_results(ref.name, runner, host.layout.artifacts, summary):
                on_event(event)
        counts = (
            {"succeeded": int(summary.get("succeeded", 0)), "failed": int(summary.get("failed", 0))} if summary else {}
        )
        if final.state is not JobState.EXITED:
            return JobStatus(
                ref,
                JobPhase.FAILED,
                secondary=final.state.value,
                children=counts,
                reason=f"the training job on {host.instance_id} {final.state.value} without an exit code; "
                "`console resume` continues from the checkpoints",
            )
        if final.exit_code == 3:
            return JobStatus(
                ref,
                JobPhase.FAILED,
                secondary=GUARD_REFUSED,
                children=counts,
                reason=f"the instance refused to train: {first_reason(summary)}",
            )
        if final.exit_code != 0 or not summary:
            failed = failed_units(summary)
            why = f"training failed for {', '.join(failed)}" if failed else f"the scheduler exited {final.exit_code}"
            return JobStatus(ref, JobPhase.FAILED, secondary=f"exit {final.exit_code}", reason=why, children=counts)
        seconds = float(summary.get("seconds", 0) or 0)
        return JobStatus(
            ref, JobPhase.SUCCEEDED, children=counts, training_s=seconds, secondary=f"on {host.instance_id}"
        )

    def _until_reachable(self, host: SshHost, watch: HostWatch, should_stop: Callable[[], bool]) -> SSHRunner:
        """A connected runner for a new host, retried while its SSH is not up yet (booting)."""
        deadline = time.monotonic() + REACHABLE_WITHIN_S
        delay = 1.0
        while True:
            runner = self.hosts.runner(host, sleep=watch)
            try:
                runner.connect()
                return runner
            except HostLost:
                raise
            except (HostUnreachable, HostKeyUnknown) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                self.log.info("replacement not reachable yet (%s); trying again in %.0fs", exc, delay)
            watch(delay)
            delay = min(delay * 2, 15.0)

    def _runner(self, host: SshHost, sleep: Callable[[float], None]) -> SSHRunner:
        return self.hosts.runner(host, sleep=sleep)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.context.should_stop():
                raise Stopped("stopped")
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _checkpoint_shelf(self, run_id: str) -> CheckpointShelf | None:
        """The run's checkpoint shelf in the artifact store, or None (with a warning) without one."""
        if not self._shelf_looked:
            self._shelf_looked = True
            if self.context.store is None:
                self.log.warning("checkpoints stay on the host only (no artifact store)")
            else:
                staging = (self.context.work_dir or Path(".")) / run_id / "checkpoints"
                self._shelf = CheckpointShelf(self.context.store, run_id, staging, self.log)
        return self._shelf


def _spec_of(ref: JobRef) -> JobSpec:
    """The job as submitted (what a replacement host is given), from the ref's own data."""
    data: dict[str, Any] = dict(ref.data)
    params = dict(data.get("params") or {})
    schedule = {**dict(params.get("schedule") or {}), "force": False}
    return JobSpec(
        run_id=ref.run_id,
        name=ref.name,
        family=str(data.get("family") or "lstm"),
        units=tuple(data.get("units") or ()),
        params={**params, "schedule": schedule},
    )


def _tag_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in " +-=._:/@" else "-" for c in text)[:256]


__all__ = ["HostLost", "HostPool", "RemoteLayout", "SshBackend", "SshHost"]
