"""The watchdog's rules: when an instance has outlived its purpose. Pure: facts in, a verdict out.

=============  ===========================================================================
rule           when
=============  ===========================================================================
orphan         tagged as ours, but no run in the state store knows it
run-ended      its run finished (succeeded, failed, blocked, cancelled) and left it running
budget         its run's budget, the daily budget or the per-instance budget is reached
max-runtime    up longer than its max-runtime tag (else the run's, else the settings')
heartbeat      its run is unfinished and no console has beaten for ``heartbeat_timeout_s``
               (not for a manual run: nothing drives it; its dead-man switch guards it)
idle           GPU below `IDLE_GPU_PCT` for ``idle_timeout_s`` while no step of its run runs
=============  ===========================================================================

The first rule an instance breaks, in this order, is its verdict. Models not yet uploaded
(`models_pending_upload`) hold a termination back up to ``upload_grace_s``; orphans have no
run, so nothing holds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from console.settings import WatchdogSettings
from console.state import EventRecord, RunRecord, RunStatus, StepRecord

IDLE_GPU_PCT = 5.0
"""GPU utilisation below this counts as idle."""
UPLOADED_EVENTS = frozenset({"artifacts.uploaded", "models.uploaded"})
"""Event kinds that say the run's models are in the artifact store, sha256 verified: the upload
step writes ``artifacts.uploaded``; anything else that verified them may write ``models.uploaded``."""
RULES = ("orphan", "run-ended", "budget", "max-runtime", "heartbeat", "idle")


@dataclass(frozen=True)
class Verdict:
    """Why an instance must go."""

    instance_id: str
    run_id: str | None
    rule: str
    reason: str


@dataclass(frozen=True)
class Facts:
    """What the rules look at for one instance, as the pass found it."""

    instance_id: str
    run: RunRecord | None
    """The run that owns it (by the store's record, else by its run tag), if the store knows one."""
    run_tag: str | None
    """The run id the instance is tagged with (for an orphan's reason)."""
    launched_at: float
    max_runtime_minutes: float
    """From the instance's tag, else the run's ``max_runtime_hours``, else the settings'."""
    budget_reason: str | None = None
    """Why a budget it counts against is reached, when one is."""
    idle_s: float | None = None
    """Seconds its GPU has been idle with no step running; None when busy or unknown."""


def first_rule(facts: Facts, now: float, settings: WatchdogSettings) -> Verdict | None:
    """The first rule ``facts`` break, in the order of the table above; None when none is."""
    run = facts.run
    run_id = run.id if run is not None else None

    def verdict(rule: str, reason: str) -> Verdict:
        return Verdict(facts.instance_id, run_id, rule, reason)

    if run is None:
        tag = f" (tagged run-id {facts.run_tag}, unknown here)" if facts.run_tag else ""
        return verdict("orphan", f"orphan: tagged as ours but no run in the state store knows it{tag}")
    if run.status.finished:
        return verdict("run-ended", f"run {run.id} {run.status} but left its instance running")
    if facts.budget_reason is not None:
        return verdict("budget", facts.budget_reason)
    up_s = now - facts.launched_at
    if up_s > facts.max_runtime_minutes * 60:
        return verdict(
            "max-runtime", f"up {up_s / 60:.1f} min, past its max runtime of {facts.max_runtime_minutes:g} min"
        )
    silent = now - max(run.heartbeat_at or 0.0, facts.launched_at)
    if silent > settings.heartbeat_timeout_s and run.status is not RunStatus.MANUAL:
        return verdict(
            "heartbeat",
            f"no heartbeat from the console driving run {run.id} for {silent:.0f}s "
            f"(timeout {settings.heartbeat_timeout_s:g}s)",
        )
    if facts.idle_s is not None and facts.idle_s > settings.idle_timeout_s:
        return verdict(
            "idle", f"GPU idle for {facts.idle_s:.0f}s (timeout {settings.idle_timeout_s:g}s) with no step using it"
        )
    return None


def max_runtime_minutes(tag: str | None, run: RunRecord, default_hours: float) -> float:
    """The instance's max-runtime tag, else its run's ``max_runtime_hours``, else the default."""
    minutes = _float(tag)
    if minutes is not None:
        return minutes
    hours = _float(run.params.get("max_runtime_hours"))
    return (hours if hours is not None else default_hours) * 60


def models_pending_upload(steps: Iterable[StepRecord], events: Iterable[EventRecord]) -> bool:
    """True when the run trained models that are not yet verified in the artifact store."""
    by_name = {s.name: s for s in steps}
    train, upload = by_name.get("train"), by_name.get("upload")
    if train is None or train.state != "succeeded":
        return False
    if upload is not None and upload.state in ("succeeded", "skipped"):
        return False
    trained_at = train.finished_at or 0.0
    return not any(e.kind in UPLOADED_EVENTS and e.ts >= trained_at for e in events)


def _float(value: object) -> float | None:
    try:
        return float(value) if value is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
