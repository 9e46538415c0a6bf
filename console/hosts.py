"""The run's leased hosts, as the ``ssh`` backend sees them (`remote.backends.ssh.HostPool`).

The backend trains on whatever host the run holds; this is where "the run's host" is
answered from the checklist's own records and the instances service: the launch step's
outputs name it (and are superseded when a lost host is replaced), the sync step's name
its lease and GPU, and the provider's capabilities say whether a lost one can be replaced
and whether spot notices are worth looking for.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from console.errors import StepFailed
from console.outputs import LaunchOutputs, SyncOutputs
from console.transfer import lease_is_for, ready_host
from remote.backends.ssh.hosts import RemoteLayout, SshHost
from remote.errors import RemoteError
from remote.providers.base import ProviderCapability

if TYPE_CHECKING:  # pragma: no cover
    from console.checklist.step import StepContext
    from remote.ssh import SSHRunner


PROVIDER_SILENCE_S = 60.0
"""How long the provider may stay unreachable before the train step says so (and again each minute)."""


class RunHosts:
    """The `HostPool` of one run, for one step's attempt (it logs to that step's log)."""

    def __init__(
        self, ctx: "StepContext", *, max_replacements: int = 2, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ctx = ctx
        self.max_replacements = max_replacements
        self.clock = clock
        self._unreachable_since: float | None = None
        self._told_at: float | None = None

    # --- the run's host -------------------------------------------------------------------

    def _launched(self) -> LaunchOutputs:
        launched = self.ctx.output_of("launch", LaunchOutputs)
        if launched is None or not launched.host:
            raise StepFailed("no instance to train on", hint="run the launch step first")
        return launched

    def current(self) -> SshHost:
        launched = self._launched()
        synced = self.ctx.output_of("sync", SyncOutputs) or SyncOutputs()
        return SshHost(launched.instance_id, RemoteLayout.at(launched.remote_root), synced.gpu or "unknown")

    def acquire(self) -> SshHost:
        """The host the launch step got (and the sync step readied): the checklist acquires it."""
        return self.current()

    def runner(self, host: SshHost, *, sleep: Callable[[float], None]) -> "SSHRunner":
        launched = self._launched()
        if launched.instance_id != host.instance_id:
            raise StepFailed(f"{host.instance_id} is no longer the run's instance ({launched.instance_id} is)")
        return self.ctx.resources.runner(launched, sleep=sleep)

    def ready(self, host: SshHost, runner: "SSHRunner") -> SshHost:
        """Sync code, features and the lease to the host unless its lease is already for it."""
        launched = self._launched()
        if lease_is_for(runner, launched):
            return host
        self.ctx.log.info("syncing code, features and the lease to %s", host.instance_id)
        done = ready_host(
            self.ctx.resources,
            runner,
            launched,
            run_id=self.ctx.run_id,
            symbols=list(self.ctx.params.symbols),
            log=self.ctx.log,
            cancelled=self.ctx.cancelled,
        )
        self.ctx.supersede("sync", done.outputs, done.summary, f"{host.instance_id} readied (replacement)")
        return SshHost(host.instance_id, host.layout, done.outputs.gpu or host.gpu)

    # --- losing one -------------------------------------------------------------------------

    def _capabilities(self) -> frozenset[ProviderCapability]:
        try:
            return self.ctx.resources.provider().capabilities
        except RemoteError as exc:  # training goes on; only a lost host could not be noticed or replaced
            self.ctx.log.warning("cannot watch the instance through the provider: %s", exc)
            return frozenset()

    def lost_reason(self, host: SshHost) -> str | None:
        if ProviderCapability.RENTS_MACHINES not in self._capabilities():
            return None  # a lent host is not lost by the provider: SSH says when it is down
        try:
            why = self.ctx.instances.lost_reason(host.instance_id)
        except RemoteError as exc:  # the provider being unreachable is not evidence of a lost host
            self.ctx.log.warning("could not ask the provider about %s: %s", host.instance_id, exc)
            self._provider_silent(host, exc)
            return None
        self._unreachable_since = self._told_at = None
        return why

    def _provider_silent(self, host: SshHost, exc: Exception) -> None:
        """Say so, once a minute, while the provider stays unreachable (a dead sandbox daemon, an
        API outage): training waits with a visible reason instead of silently until its timeout."""
        now = self.clock()
        if self._unreachable_since is None:
            self._unreachable_since = now
        silent = now - self._unreachable_since
        if silent >= PROVIDER_SILENCE_S and (self._told_at is None or now - self._told_at >= PROVIDER_SILENCE_S):
            self._told_at = now
            message = (
                f"the provider has been unreachable for {silent:.0f}s, so whether {host.instance_id} still runs"
                f" is unknown ({exc}); is the sandbox up (`console sandbox status`)?"
            )
            self.ctx.log.error("%s", message)
            self.ctx.emit("provider.unreachable", message, instance_id=host.instance_id, silent_s=round(silent))

    def can_replace(self) -> bool:
        return ProviderCapability.RENTS_MACHINES in self._capabilities()

    def watches_spot_notices(self) -> bool:
        return ProviderCapability.SPOT_NOTICES in self._capabilities()

    def replacements(self) -> int:
        return self.ctx.instances.replacements(self.ctx.run_id)

    def replace(self, host: SshHost, why: str) -> SshHost:
        """Terminate the lost host, launch the run's next one as the launch step does, and
        supersede the launch step's outputs so every later step (and the watchdog) finds it."""
        ctx, p = self.ctx, self.ctx.params
        launch_record = ctx.state.get_step(ctx.run_id, "launch")
        attempt = max(1, launch_record.attempt if launch_record else 1) + self.replacements() + 1
        launched = ctx.instances.replace(
            ctx.run_id,
            host.instance_id,
            why,
            instance_type=p.instance_type,
            alt_type=p.alt_instance_type,
            budget_usd=p.budget_usd,
            max_runtime_hours=p.max_runtime_hours,
            attempt=attempt,
            timeout_s=max(30.0, min(600.0, ctx.seconds_left - 60)),
        )
        outputs = launched.outputs.model_copy(update={"remote_root": self._launched().remote_root})
        ctx.supersede(
            "launch",
            outputs,
            f"{launched.summary()}; replaces {host.instance_id} (lost during training: {why})",
            f"{launched.instance_id} replaces {host.instance_id} (lost: {why})",
        )
        return SshHost(launched.instance_id, host.layout, host.gpu)

    def release(self) -> tuple[str, ...]:
        """Terminate every instance of the run and confirm it (the terminate step)."""
        ctx = self.ctx
        done = []
        for iid in ctx.instances.live_ids(ctx.run_id):
            ctx.check_cancelled()
            ended = ctx.instances.terminate(
                iid, reason="terminate step", timeout_s=max(30.0, min(600.0, ctx.seconds_left - 5))
            )
            if not ended.confirmed:
                raise StepFailed(f"{iid} is still {ended.state} after terminate", hint="the step retries it")
            if not ended.already_gone:
                ctx.emit("instance.terminated", f"{iid} terminated (confirmed)", instance_id=iid)
            done.append(iid)
        return tuple(done)
