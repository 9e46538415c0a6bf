"""A training host lost mid-run (spot interruption, terminated), noticed and replaced.

`HostWatch` is the sleep function the train step's SSH runner waits with, so it runs
between polls of the job's log and between reconnect attempts. Every few seconds it asks
the provider what the instance is doing, and (while SSH is up) whether the host has a spot
interruption notice; an instance the provider no longer reports running raises
`HostLost`, which ends the follow at once instead of after minutes of reconnecting.

`replace_lost_instance` gets the run its next instance: the lost one is terminated for
good first (so the run never has two running), the replacement comes from the launch
step's own path (`launch_spec`, `provider.launch`, `Launch._record`) with the next attempt
number in its tags, and the launch step's outputs are rewritten to name it, so sync,
upload, terminate, the heartbeat and the watchdog all find the replacement.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from console.errors import Interrupted, StepFailed
from remote.errors import HostKeyUnknown, HostUnreachable, InstanceNotFound

if TYPE_CHECKING:  # pragma: no cover
    from console.checklist.step import StepContext
    from remote.providers.base import Provider
    from remote.ssh import SSHRunner

LIVE = ("pending", "running")
REPLACED_EVENT = "instance.replaced"
"""Event kind recorded once per replacement; counting them bounds the relaunches of a run."""
SPOT_NOTICE_SCRIPT = (
    # The sandbox names its notice file; on EC2 the same JSON is in instance metadata (IMDSv2).
    'if [ -n "${RC_SANDBOX_SPOT_NOTICE:-}" ]; then cat "$RC_SANDBOX_SPOT_NOTICE" 2>/dev/null; '
    "else t=$(curl -s -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
    "http://169.254.169.254/latest/api/token 2>/dev/null) && "
    'curl -s -f -m 2 -H "X-aws-ec2-metadata-token: $t" '
    "http://169.254.169.254/latest/meta-data/spot/instance-action 2>/dev/null; fi; exit 0"
)


class HostLost(StepFailed):
    """The instance the job ran on is gone (terminated, shutting down, stopped)."""

    def __init__(self, instance_id: str, why: str) -> None:
        super().__init__(f"instance {instance_id} was lost during training: {why}",
                         hint="`console resume` launches a replacement and resumes from the checkpoints")
        self.instance_id = instance_id
        self.why = why


def lost_reason(provider: "Provider", instance_id: str) -> str | None:
    """Why the provider says the instance can no longer train (None while it is live)."""
    try:
        inst = provider.describe(instance_id)
    except InstanceNotFound:
        return "the provider no longer knows it"
    if inst.state in LIVE:
        return None
    return f"it is {inst.state}" + (f" ({inst.state_reason})" if inst.state_reason else "")


class HostWatch:
    """The runner's sleep: honours cancellation, and raises `HostLost` once the host is gone."""

    def __init__(self, ctx: "StepContext", provider: "Provider", instance_id: str, *,
                 every_s: float = 2.0, notice_every_s: float = 5.0) -> None:
        self.ctx = ctx
        self.provider = provider
        self.instance_id = instance_id
        self.every_s = every_s
        self.notice_every_s = notice_every_s
        self.runner: "SSHRunner | None" = None
        """Set once the runner exists; used only for the spot notice, only while connected."""
        self.notice: str | None = None
        """The spot interruption notice, once one was seen."""
        self._last_check = 0.0
        self._last_notice = 0.0
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        if self.ctx.cancelled.wait(seconds):
            raise Interrupted(f"step {self.ctx.step_name} was cancelled")
        self.check()

    def check(self, *, force: bool = False) -> None:
        """Ask the provider (at most every ``every_s``, unless ``force``); raise `HostLost`."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_check < (self.every_s if self.notice is None else 0.5):
                self._check_notice(now)
                return
            self._last_check = now
        try:
            why = lost_reason(self.provider, self.instance_id)
        except Exception as exc:  # the provider being unreachable is not evidence of a lost host
            self.ctx.log.warning("could not ask the provider about %s: %s", self.instance_id, exc)
            return
        if why is not None:
            raise HostLost(self.instance_id, why)
        self._check_notice(now)

    def wait_for_loss(self, grace_s: float) -> str | None:
        """After the job died by a signal: give the provider ``grace_s`` to report the host
        gone (a spot notice stretches it); why it is lost, or None when it stays live."""
        deadline = time.monotonic() + (max(grace_s, 150.0) if self.notice else grace_s)
        while True:
            try:
                self.check(force=True)
            except HostLost as lost:
                return lost.why
            if time.monotonic() >= deadline:
                return None
            if self.ctx.cancelled.wait(1.0):
                raise Interrupted(f"step {self.ctx.step_name} was cancelled")

    def _check_notice(self, now: float) -> None:
        runner = self.runner
        if self.notice is not None or runner is None or not runner.connected:
            return
        if now - self._last_notice < self.notice_every_s:
            return
        self._last_notice = now
        try:
            text = runner.run(["sh", "-c", SPOT_NOTICE_SCRIPT], timeout_s=10, check=False).output.strip()
        except Exception:  # a dropped link is the follow loop's to handle
            return
        if '"action"' in text:
            self.notice = text[:200]
            self.ctx.log.warning("spot interruption notice on %s: %s", self.instance_id, self.notice)
            self.ctx.emit("instance.spot_notice", f"spot interruption notice on {self.instance_id}",
                          instance_id=self.instance_id, notice=self.notice)


def relaunches_so_far(ctx: "StepContext") -> int:
    """How many times this run's instance was already replaced (across attempts and resumes)."""
    return sum(1 for e in ctx.state.events(ctx.run_id) if e.kind == REPLACED_EVENT)


def replace_lost_instance(ctx: "StepContext", provider: "Provider", lost_id: str, why: str) -> dict[str, Any]:
    """Terminate ``lost_id`` for good, launch the run's next instance as the launch step
    does, record it, and rewrite the launch step's outputs; the new outputs."""
    from console.steps.cloud import Launch, launch_spec

    p = ctx.params
    ctx.log.warning("instance %s lost: %s", lost_id, why)
    try:
        provider.terminate(lost_id, timeout_s=max(30.0, min(600.0, ctx.seconds_left - 60)))
    except InstanceNotFound:
        pass
    ctx.state.mark_instance_terminated(lost_id, f"lost during training: {why}")
    launch_record = ctx.state.get_step(ctx.run_id, "launch")
    attempt = max(1, launch_record.attempt if launch_record else 1) + relaunches_so_far(ctx) + 1
    spec = launch_spec(ctx.settings, ctx.run_id, instance_type=p.instance_type, alt_type=p.alt_instance_type,
                       budget_usd=p.budget_usd, max_runtime_hours=p.max_runtime_hours, attempt=attempt)
    outcome = provider.launch(spec)
    if outcome.instance.id == lost_id:  # cannot happen once it is terminated; never train on it again
        raise StepFailed(f"the provider handed back the lost instance {lost_id}", hint="terminate it by hand")
    result = Launch._record(ctx, provider, outcome)
    new_id = result.outputs["instance_id"]
    ctx.state.rewrite_step_outputs(ctx.run_id, "launch", outputs=result.outputs,
                                   message=f"launch: {new_id} replaces {lost_id} (lost: {why})",
                                   summary=f"{result.summary}; replaces {lost_id} (lost during training: {why})")
    ctx.emit(REPLACED_EVENT, f"{new_id} replaces {lost_id} (lost during training: {why})",
             lost=lost_id, replacement=new_id, reason=why, attempt=attempt)
    return result.outputs


def until_reachable(ctx: "StepContext", action: Callable[[], Any], *, within_s: float = 300.0) -> Any:
    """``action()``, retried while the new host's SSH is not up yet (booting; on EC2 its host
    key is published in the console output only minutes after launch), for ``within_s``."""
    deadline = time.monotonic() + min(within_s, max(30.0, ctx.seconds_left - 60))
    delay = 1.0
    while True:
        try:
            return action()
        except (HostUnreachable, HostKeyUnknown) as exc:
            if time.monotonic() + delay > deadline:
                raise
            ctx.log.info("replacement not reachable yet (%s); trying again in %.0fs", exc, delay)
        if ctx.cancelled.wait(delay):
            raise Interrupted(f"step {ctx.step_name} was cancelled")
        delay = min(delay * 2, 15.0)
