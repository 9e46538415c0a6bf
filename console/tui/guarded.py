"""What the guarded actions cost, in words for the confirmation modals, and how they are carried out.

Terminating an instance goes through the instances service (`console.instances`), the
same one ``console instance terminate``, the steps and the watchdog use, so there is one
implementation and one way of recording it. Going live records the operator's approval
against the gate pass it relies on; a live runtime checks the gate itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from console.cost import InstanceCost
from console.errors import ConsoleError
from console.state import InstanceRecord, StateStore
from console.tui.figures import format_duration

if TYPE_CHECKING:
    from console.resources import Resources
    from console.settings import Settings

CLOUD_STEPS = frozenset({"launch", "sync", "train", "upload"})
"""Steps that start or keep a rented instance running (and so cost money by the hour)."""

Terminator = Callable[[str], str]
"""Terminates the instance with this id; returns a one-line result or raises with one line."""

LiveApprover = Callable[[int], str]
"""Records going live on the gate pass with this id; returns a one-line result."""


def launch_rate(instance_type: str, *, sandbox: bool) -> tuple[float | None, float | None]:
    """(spot $/h, on-demand $/h) known before launch: the sandbox table's figures, or (None, None)."""
    if not sandbox:
        return None, None
    try:
        from remote.sandbox.prices import SANDBOX_ON_DEMAND_USD_PER_HOUR, SANDBOX_SPOT_USD_PER_HOUR
    except ImportError:  # pragma: no cover - the sandbox ships with the console
        return None, None
    zones = SANDBOX_SPOT_USD_PER_HOUR.get(instance_type, {})
    return (min(zones.values()) if zones else None), SANDBOX_ON_DEMAND_USD_PER_HOUR.get(instance_type)


def run_cost(
    steps: Sequence[str],
    *,
    settings: Settings,
    instance_type: str,
    active: Sequence[InstanceRecord],
) -> str:
    """What running ``steps`` costs, in one or two sentences for the confirmation modal."""
    names = ", ".join(steps) if steps else "(none)"
    budget = f"run budget ${settings.budget.run_usd:.2f}, at most {settings.max_runtime_hours:g} h"
    if "launch" in steps:
        spot, on_demand = launch_rate(instance_type, sandbox=settings.is_sandbox)
        if spot is not None:
            label = " (sandbox figure)" if settings.is_sandbox else ""
            ceiling = spot * settings.max_runtime_hours
            money = f"about ${spot:.4f}/h{label}, up to ${ceiling:.2f} over the maximum runtime"
        else:
            money = "the spot price at launch" + (f" (on-demand ${on_demand:.3f}/h)" if on_demand else "")
        return f"Runs {names}. Launches a {instance_type} spot instance: {money}; {budget}."
    if active and CLOUD_STEPS.intersection(steps):
        held = ", ".join(f"{i.id} ({i.instance_type or i.provider})" for i in active)
        return f"Runs {names}. Keeps {held} running and costing money by the hour; {budget}."
    return f"Runs {names}. These steps run on this machine: no cloud cost."


def terminate_cost(instance: InstanceRecord, line: InstanceCost | None) -> str:
    """The modal body for terminating ``instance`` (with its ledger line when known)."""
    spent = f" It has cost ${line.cost_usd:.2f} over {format_duration(line.seconds)}." if line is not None else ""
    return (
        f"Terminate {instance.id} ({instance.instance_type or instance.provider} in {instance.zone or '?'})?{spent}"
        " Anything on it that was not uploaded is lost, and a running step on it fails."
    )


def instances_terminator(resources: "Resources", store: StateStore) -> Terminator:
    """A `Terminator` through the instances service: confirmed, recorded, one line back."""

    def terminate(instance_id: str) -> str:
        from console.instances import Instances

        ended = Instances(resources, store).terminate(instance_id, reason="operator (console tui)")
        if not ended.confirmed:
            raise ConsoleError(f"{instance_id} is still {ended.state} after terminate; try again")
        return ended.line()

    return terminate


def store_live_approver(store: StateStore, run_id: str | None) -> LiveApprover:
    """A `LiveApprover` that records a ``live.approved`` event naming the gate pass."""

    def approve(gate_id: int) -> str:
        message = f"go live approved by the operator on gate pass #{gate_id}"
        store.add_event(run_id, None, "live.approved", message, {"gate_id": gate_id})
        return message

    return approve
