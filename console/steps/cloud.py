"""The ``launch`` and ``terminate`` checklist steps: the run's instance, through the instances service.

`launch` is idempotent per run: the provider first looks for a live instance tagged with
the run id (so a resumed run after ``kill -9`` reuses the GPU it already pays for); the
instance is recorded with its price, and its SSH coordinates are the step's outputs for
the sync and train steps. Every instance carries the dead-man switch in its user-data.

`terminate` gives back every instance of the run through the training backend (the ``ssh``
backend terminates them and waits until the provider confirms each).

Both end SKIPPED, saying so, when the run's backend starts and stops its own machines
(`BackendCapability.MANAGES_INSTANCES`): there is nothing of ours to launch or end.
"""

from __future__ import annotations

from console.checklist.step import Step, StepContext, StepResult, register
from console.hosts import RunHosts
from console.outputs import LaunchOutputs, TerminateOutputs
from console.steps.params import LaunchParams, TerminateParams
from remote.backends import backend_class
from remote.backends.base import BackendCapability


def not_needed_by_backend(ctx: StepContext, what: str) -> StepResult | None:
    """SKIPPED when the run's backend manages its own instances (it needs no ``what``), else None."""
    name = ctx.params.backend
    if BackendCapability.MANAGES_INSTANCES in backend_class(name).capabilities:
        return StepResult.skipped(f"skipped: the {name} backend manages its own instances ({what} not needed)")
    return None


@register
class Launch(Step):
    """Get a spot GPU for the run (or the one it already has)."""

    name = "launch"
    Params = LaunchParams
    Outputs = LaunchOutputs

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        if BackendCapability.MANAGES_INSTANCES in backend_class(p.backend).capabilities:
            return f"nothing: the {p.backend} backend manages its own instances"
        res = ctx.resources
        where = "the sandbox" if res.sandboxed else f"{res.settings.cloud_provider} {res.settings.aws_region}"
        return (
            f"launch a {p.instance_type} spot instance (else {p.alt_instance_type}) on {where}, "
            f"budget ${p.budget_usd:.2f}, at most {p.max_runtime_hours:g}h; reuse the run's own if it exists"
        )

    def run(self, ctx: StepContext) -> StepResult:
        skipped = not_needed_by_backend(ctx, "launch")
        if skipped is not None:
            return skipped
        p = ctx.params
        launched = ctx.instances.launch_for_run(
            ctx.run_id,
            instance_type=p.instance_type,
            alt_type=p.alt_instance_type,
            budget_usd=p.budget_usd,
            max_runtime_hours=p.max_runtime_hours,
            attempt=ctx.attempt,
        )
        o = launched.outputs
        rate = launched.rate
        ctx.emit(
            "instance.reused" if launched.reused else "instance.launched",
            launched.reason,
            instance_id=o.instance_id,
            instance_type=o.instance_type,
            zone=o.zone,
            spot_usd_per_hour=rate[0] if rate else None,
            source=rate[2] if rate else None,
        )
        if ctx.settings.watchdog.autostart:
            from console.watchdog import ensure_watchdog_running

            try:
                pid = ensure_watchdog_running(ctx.settings)
                ctx.log.info("watchdog running (pid %s)", pid)
            except Exception as exc:  # noqa: BLE001 - the instance's own dead-man switch still guards it
                ctx.log.warning("could not start the watchdog: %s", exc)
                ctx.emit("watchdog.not_started", f"could not start the watchdog: {exc}")
        return StepResult.ok(
            launched.summary(),
            details={"reason": launched.reason, "tried": [str(a) for a in launched.attempts]},
            outputs=o,
        )


@register
class Terminate(Step):
    """End every instance of the run and confirm it."""

    name = "terminate"
    Params = TerminateParams
    Outputs = TerminateOutputs

    def plan(self, ctx: StepContext) -> str:
        if BackendCapability.MANAGES_INSTANCES in backend_class(ctx.params.backend).capabilities:
            return f"nothing: the {ctx.params.backend} backend manages its own instances"
        return "terminate the run's instances and wait until the provider confirms they are gone"

    def run(self, ctx: StepContext) -> StepResult:
        skipped = not_needed_by_backend(ctx, "terminate")
        if skipped is not None:
            return skipped
        backend = ctx.resources.backend(
            ctx.params.backend, run_id=ctx.run_id, hosts=RunHosts(ctx), log=ctx.log, should_stop=ctx.cancelled.is_set
        )
        done = backend.release(ctx.run_id)
        if not done:
            return StepResult.ok("no instance of this run is running", outputs=TerminateOutputs())
        return StepResult.ok(
            f"terminated {', '.join(done)} (confirmed)", outputs=TerminateOutputs(terminated=list(done))
        )
