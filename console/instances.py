"""The instances service: launch for a run, terminate and record, replace a lost one, heartbeats.

One path for every caller -- the launch, terminate and train steps, ``console instance``,
the watchdog and the TUI -- so an instance is launched, recorded, priced and ended the same
way whoever asks:

- `Instances.launch_for_run` is idempotent by the run's tag (the provider reuses a live
  instance tagged with the run id), records the instance and its price, and returns its
  SSH coordinates (`console.outputs.LaunchOutputs`);
- `Instances.terminate` asks the provider, waits for the confirmation and records the end
  with its reason; an instance the provider no longer knows is recorded as already gone
  (never an error: it is not running, which is what the caller wanted);
- `Instances.replace` ends a lost instance for good and launches the run's next one;
- `Instances.touch_heartbeats` feeds the dead-man switch of each live instance of a run,
  for providers whose machines carry one (`ProviderCapability.DEAD_MAN_SWITCH`).

Events go to the state store; nothing here writes step state (the engine does).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.cost import record_rate
from console.errors import StepFailed, UsageError
from console.outputs import HostCoordinates, LaunchOutputs
from console.redact import redact
from console.resources import Resources
from console.state import InstanceRecord, StateStore
from remote.errors import InstanceNotFound

if TYPE_CHECKING:  # pragma: no cover
    from remote.providers.base import Instance, LaunchAttempt, Provider
    from remote.ssh import SSHRunner

log = logging.getLogger("console.instances")

LIVE = ("pending", "running")
ENDED = ("terminated", "shutting-down")
REPLACED_EVENT = "instance.replaced"
"""Event kind recorded once per replacement; counting them bounds the relaunches of a run."""


@dataclass(frozen=True)
class Launched:
    """An instance a run now holds, and how it came to."""

    outputs: LaunchOutputs
    reused: bool
    reason: str
    """One line: which zone and type, and why (price, capacity, reuse)."""
    attempts: tuple["LaunchAttempt", ...]
    rate: tuple[float, float | None, str] | None
    """(spot $/h, on-demand $/h, where the figures come from), when the provider priced it."""

    @property
    def instance_id(self) -> str:
        return self.outputs.instance_id

    def summary(self) -> str:
        o = self.outputs
        rate = f" at ${self.rate[0]:.4f}/h ({self.rate[2]})" if self.rate else ""
        return f"{'reused' if self.reused else 'launched'} {o.instance_id} ({o.instance_type} in {o.zone}){rate}"


@dataclass(frozen=True)
class Terminated:
    """How a termination ended."""

    instance_id: str
    state: str
    """The provider's last word: ``terminated`` once confirmed."""
    already_gone: bool = False
    """The provider no longer knew it (recorded as terminated all the same)."""
    seconds: float = 0.0

    @property
    def confirmed(self) -> bool:
        return self.already_gone or self.state == "terminated"

    def line(self) -> str:
        if self.already_gone:
            return f"{self.instance_id}: already gone"
        return f"{self.instance_id}: {self.state}" + (" (confirmed)" if self.confirmed else " (not confirmed)")


class Instances:
    """The run's instances through the configured provider, recorded in the state store."""

    def __init__(
        self,
        resources: Resources,
        store: StateStore,
        *,
        log: logging.Logger | None = None,
        provider: "Provider | None" = None,
    ) -> None:
        self.resources = resources
        self.store = store
        self.log = log or logging.getLogger("console.instances")
        self._provider = provider
        """A provider to use instead of the configured one (the watchdog's, a fake's)."""

    @property
    def provider(self) -> "Provider":
        return self._provider if self._provider is not None else self.resources.provider()

    # --- launching -------------------------------------------------------------------------

    def launch_for_run(
        self,
        run_id: str,
        *,
        instance_type: str,
        alt_type: str,
        budget_usd: float,
        max_runtime_hours: float,
        attempt: int = 1,
        record_run: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> Launched:
        """The run's live instance, or a new one: recorded (with its price) and reachable.

        ``record_run`` False keeps a run tag that names no run of this store out of the
        instance's row (``console instance launch --run-id manual-...``).
        """
        provider = self.provider
        spec = self.resources.launch_spec(
            run_id,
            instance_type=instance_type,
            alt_type=alt_type,
            budget_usd=budget_usd,
            max_runtime_hours=max_runtime_hours,
            attempt=attempt,
        )
        self.log.info("looking for an instance of run %s before launching", run_id)
        outcome = provider.launch(spec)
        for tried in outcome.attempts:
            self.log.info("tried %s", tried)
        self.log.info("%s", outcome.reason)
        inst = outcome.instance
        self.record(
            inst,
            run_id if record_run else None,
            {"launch_reason": outcome.reason, "attempt": attempt, "run_tag": run_id, **(extra or {})},
        )
        rate = self._price(provider, inst)
        if rate is not None:
            record_rate(self.store, inst.id, run_id if record_run else None, *rate)
        return Launched(self.outputs_of(inst), outcome.reused, outcome.reason, tuple(outcome.attempts), rate)

    def record(self, inst: "Instance", run_id: str | None, extra: dict[str, Any] | None = None) -> None:
        """Upsert the instance's row (never a secret in it)."""
        data = {
            "public_address": inst.public_address,
            "port": inst.port,
            "ssh_user": inst.ssh_user,
            "key_path": str(inst.key_path) if inst.key_path else None,
            "lifecycle": inst.lifecycle,
            "spot_max_usd_per_hour": inst.spot_max_usd_per_hour,
            **(extra or {}),
        }
        launched = inst.launched_at.timestamp() if inst.launched_at else None
        self.store.upsert_instance(
            inst.id,
            run_id=run_id,
            provider=self.provider.name,
            state=inst.state,
            instance_type=inst.instance_type,
            zone=inst.zone,
            launched_at=launched,
            data=data,
        )

    def outputs_of(self, inst: "Instance") -> LaunchOutputs:
        """What later steps need to reach the instance over SSH (resolved through the sandbox's "DNS")."""
        outputs = LaunchOutputs(
            instance_id=inst.id,
            instance_type=inst.instance_type,
            zone=inst.zone,
            host=inst.public_address or "",
            port=inst.port,
            user=inst.ssh_user,
            key_path=str(inst.key_path) if inst.key_path else "",
            provider=inst.provider,
            public_address=inst.public_address,
        )
        if self.resources.sandboxed:
            return self.resources.sandbox_host(inst.id, outputs)
        return outputs

    @staticmethod
    def _price(provider: "Provider", inst: "Instance") -> tuple[float, float | None, str] | None:
        if inst.spot_usd_per_hour is None:
            return None
        on_demand = None
        source = getattr(provider, "price_source", "launch tag")
        try:
            for price in provider.prices([inst.instance_type]):
                if price.zone == inst.zone:
                    on_demand, source = price.on_demand_usd_per_hour, price.source
                    break
        except Exception:  # noqa: BLE001 - the price table is for the ledger; the launch itself succeeded
            pass
        return inst.spot_usd_per_hour, on_demand, source

    # --- ending ---------------------------------------------------------------------------------

    def terminate(self, instance_id: str, *, reason: str, timeout_s: float = 300.0) -> Terminated:
        """Terminate and wait for the provider's confirmation; recorded with ``reason`` once confirmed.

        An instance the provider no longer knows is recorded as already gone. Raises the
        provider's errors (unreachable, credentials) for the caller to retry.
        """
        started = time.monotonic()
        try:
            inst = self.provider.terminate(instance_id, timeout_s=timeout_s)
        except InstanceNotFound:
            self.log.info("%s is already gone", instance_id)
            self.store.mark_instance_terminated(instance_id, f"{reason}: already gone")
            return Terminated(instance_id, "terminated", already_gone=True, seconds=time.monotonic() - started)
        done = Terminated(instance_id, inst.state, seconds=time.monotonic() - started)
        if done.confirmed:
            self.store.mark_instance_terminated(instance_id, reason)
        self.log.info("%s %s after %.1fs", instance_id, inst.state, done.seconds)
        return done

    def live_ids(self, run_id: str) -> list[str]:
        """Instances of the run that may still be running: the store's and the provider's."""
        ids = {r.id for r in self.store.instances(run_id=run_id, active_only=True)}
        ids |= {i.id for i in self.provider.list_managed() if i.run_id == run_id}
        return sorted(ids)

    def lost_reason(self, instance_id: str) -> str | None:
        """Why the provider says the instance can no longer work (None while it is live)."""
        try:
            inst = self.provider.describe(instance_id)
        except InstanceNotFound:
            return "the provider no longer knows it"
        if inst.state in LIVE:
            return None
        return f"it is {inst.state}" + (f" ({inst.state_reason})" if inst.state_reason else "")

    def replace(
        self,
        run_id: str,
        lost_id: str,
        why: str,
        *,
        instance_type: str,
        alt_type: str,
        budget_usd: float,
        max_runtime_hours: float,
        attempt: int,
        timeout_s: float = 300.0,
    ) -> Launched:
        """End ``lost_id`` for good (the run never holds two) and launch the run's next instance."""
        self.log.warning("instance %s lost: %s", lost_id, why)
        self.terminate(lost_id, reason=f"lost: {why}", timeout_s=timeout_s)
        launched = self.launch_for_run(
            run_id,
            instance_type=instance_type,
            alt_type=alt_type,
            budget_usd=budget_usd,
            max_runtime_hours=max_runtime_hours,
            attempt=attempt,
            extra={"replaces": lost_id},
        )
        if launched.instance_id == lost_id:  # cannot happen once it is terminated; never train on it again
            raise StepFailed(f"the provider handed back the lost instance {lost_id}", hint="terminate it by hand")
        self.store.add_event(
            run_id,
            None,
            REPLACED_EVENT,
            f"{launched.instance_id} replaces {lost_id} (lost: {why})",
            {"lost": lost_id, "replacement": launched.instance_id, "reason": why, "attempt": attempt},
        )
        return launched

    def replacements(self, run_id: str) -> int:
        """How many times the run's instance was replaced (across attempts and resumes)."""
        return sum(1 for e in self.store.events(run_id) if e.kind == REPLACED_EVENT)

    # --- reaching one -------------------------------------------------------------------------------

    def record_of(self, instance_id: str) -> InstanceRecord:
        rows = [r for r in self.store.instances() if r.id == instance_id]
        if not rows:
            raise UsageError(f"no instance {instance_id!r} in the state store", hint="see `console instance list`")
        return rows[-1]

    def coordinates(self, instance_id: str) -> HostCoordinates:
        """SSH coordinates of a live instance the state store knows (`console exec`, heartbeats, readings)."""
        row = self.record_of(instance_id)
        if row.state in ENDED:
            raise UsageError(f"instance {instance_id} is {row.state}", hint="launch a new one")
        data = row.data
        coordinates = HostCoordinates(
            instance_id=row.id,
            host=str(data.get("public_address") or ""),
            port=int(data.get("port") or 22),
            user=str(data.get("ssh_user") or self.resources.settings.cloud.ssh_user),
            key_path=str(data.get("key_path") or ""),
            provider=row.provider,
            host_key_publication=str(data["host_key"]) if data.get("host_key") else None,
        )
        if self.resources.sandboxed and self.resources.owns(row.provider):
            return self.resources.sandbox_host(row.id, coordinates)
        return coordinates

    def runner(self, instance_id: str) -> "SSHRunner":
        return self.resources.runner(self.coordinates(instance_id))

    # --- the console's side of the dead-man switch ----------------------------------------------------

    def touch_heartbeats(self, run_id: str) -> list[str]:
        """Touch the dead-man heartbeat file on every live instance of the run; the ids touched.

        The engine calls this every ``heartbeat_timeout_s / 3`` while it drives the run; when
        it stops (killed, laptop closed), each instance ends itself (`remote.deadman`).
        Failures are logged and skipped: a missed touch is retried next time.
        """
        from remote.deadman import heartbeat_touch_command
        from remote.providers.base import ProviderCapability

        records = self.store.instances(run_id=run_id, active_only=True)
        if not records:
            return []
        # Never starts the sandbox: one that is down has no instances to keep alive.
        provider = self._provider if self._provider is not None else self.resources.provider(start_sandbox=False)
        if ProviderCapability.DEAD_MAN_SWITCH not in provider.capabilities:
            return []  # lent machines carry no switch: they are not ours to power off
        touched = []
        for record in records:
            if record.provider != provider.name:
                continue
            try:
                with self.runner(record.id) as runner:
                    runner.run(heartbeat_touch_command(), timeout_s=20.0)
                touched.append(record.id)
            except Exception as exc:  # noqa: BLE001 - the next beat tries again; the switch allows for misses
                log.warning("%s", redact(f"cannot touch the heartbeat on {record.id}: {exc}"))
                self._record_if_gone(provider, record.id)
        return touched

    def _record_if_gone(self, provider: "Provider", instance_id: str) -> None:
        """An instance the provider confirms gone is recorded terminated at once, so its cost
        stops accruing now rather than at the watchdog's next pass."""
        try:
            inst = provider.describe(instance_id)
        except InstanceNotFound:
            self.store.mark_instance_terminated(instance_id, "gone: the provider no longer knows it")
            return
        except Exception:  # noqa: BLE001 - unreachable provider: nothing is confirmed
            return
        if inst.state == "terminated":
            why = f" ({inst.state_reason})" if inst.state_reason else ""
            self.store.mark_instance_terminated(instance_id, f"gone: terminated outside the console{why}")
