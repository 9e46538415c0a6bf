"""What the operator may do now in the console, and why not: pure rules over what the screen shows.

`refusal` answers for one action with one line (None when it is allowed); the app greys out
the bindings it refuses, writes the why line, and says why in a notification or in the
command palette (`PALETTE`). Nothing here touches a widget, a worker or the state store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from console.state import InstanceRecord, RunRecord, StepRecord

RETRYABLE_STATES = ("failed", "blocked", "cancelled")
DRIVING_ACTIONS = ("run_next", "run_all", "retry", "skip")
GUARDED_ACTIONS = (*DRIVING_ACTIONS, "cancel_step", "terminate", "go_live")
"""Actions whose bindings are greyed out while they are refused."""

PALETTE: tuple[tuple[str, str, str], ...] = (
    ("run_next", "Run next step", "Run the first unfinished step (asks first, naming the cost)"),
    ("run_all", "Run all steps", "Run every unfinished step in order (asks first)"),
    ("retry", "Retry the selected step", "Run a failed, blocked or cancelled step again"),
    ("skip", "Skip the selected step", "Record it skipped, with a reason"),
    ("cancel_step", "Cancel the running step", "Stop the step this console is running"),
    ("terminate", "Terminate the instance", "Terminate this run's instance (asks first)"),
    ("go_live", "Go live", "Only with a valid gate pass (asks first)"),
    ("details", "Show or hide step details", "The selected step's result and details"),
    ("pick_run", "Follow a recent run", "Pick a run to follow"),
    ("pick_checklist", "Start a checklist", "Pick a shipped (or your own) checklist, see its plan, start it with a"),
    ("quit", "Quit", "Leave; asks what to do with a running instance"),
)
"""(action, title, what it does) for every action the command palette offers."""


def finished(state: str) -> bool:
    """The engine's own test of a finished step (imported late: the engine is loaded by then)."""
    from console.checklist.step import StepState

    return StepState(state).finished


@dataclass(frozen=True)
class View:
    """What the rules look at: the screen's state at one moment."""

    opened: bool
    """Settings and the state store are loaded."""
    run: RunRecord | None
    steps: Sequence[StepRecord]
    spec_loaded: bool
    spec_error: str | None
    driving: bool
    """This console's engine drives the run now."""
    driven_elsewhere: bool
    selected: StepRecord | None
    active_instances: Sequence[InstanceRecord]
    gate_passed: bool
    gate_reason: str
    proposal: str | None = None
    """With no run: the checklist whose plan is shown, ready to start with ``a``."""


def refusal(action: str, view: View) -> str | None:
    """Why ``action`` cannot be done now (one line), or None when it can."""
    if not view.opened and action not in ("details", "quit"):
        return "opening the state store"
    run = view.run
    if action in DRIVING_ACTIONS:
        if run is None:
            if view.proposal and action == "run_all" and not view.driving:
                return None
            if view.proposal:
                return f"no run yet: press a to start {view.proposal}"
            return "no run: press c to pick a checklist, o to follow a run"
        if not view.spec_loaded:
            if view.spec_error:
                return f"following only: {view.spec_error}"
            return f"loading checklist {run.checklist_path}"
        if view.driving:
            return "a step is running in this console"
        if view.driven_elsewhere:
            return f"run {run.id} is driven by pid {run.driver_pid}: following only"
        if all(finished(s.state) for s in view.steps):
            return f"run {run.id} has no unfinished step"
        selected = view.selected
        if action == "retry" and (selected is None or selected.state not in RETRYABLE_STATES):
            return "select a failed, blocked or cancelled step to retry"
        if action == "skip" and (selected is None or finished(selected.state)):
            return "select an unfinished step to skip"
        return None
    if action == "pick_checklist":
        return "a step is running in this console" if view.driving else None
    if action == "cancel_step":
        return None if view.driving else "no step is running in this console"
    if action == "terminate":
        return None if view.active_instances else "no instance of this run is running"
    if action == "go_live":
        return None if view.gate_passed else view.gate_reason
    return None


def why_line(view: View) -> str:
    """The line under the panes: why going live and running are refused, when they are."""
    if view.run is None and view.proposal and not view.driving:
        return (
            f"no run yet · a: start {view.proposal} (its plan is above) · c: pick another checklist · o: follow a run"
        )
    reasons = []
    for action, label in (("go_live", "go live"), ("run_next", "run")):
        why = refusal(action, view)
        if why and not (action == "run_next" and view.driving):
            reasons.append(f"{label}: {why}")
    return " · ".join(reasons)
