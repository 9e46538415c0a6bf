"""What the state store hands out: frozen records, and the run-status enum.

Rows become records here (`run_from_row` ...); every text that enters the database goes
through the redactor (`to_json`, and the store's own writes).
"""

from __future__ import annotations

import enum
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from console.redact import redact_data


class RunStatus(enum.StrEnum):
    """Where a run is. Every change is an event (``run.<status>``)."""

    PENDING = "pending"
    """Created, every step PENDING; nothing driven yet."""
    RUNNING = "running"
    """A console drives it (or did, and died: the watchdog reads the heartbeat)."""
    SUCCEEDED = "succeeded"
    """Every step finished (succeeded or skipped)."""
    FAILED = "failed"
    """A step failed after its retries."""
    BLOCKED = "blocked"
    """A guard refused a step (or it has not landed)."""
    CANCELLED = "cancelled"
    """The operator stopped it."""
    PAUSED = "paused"
    """Stopped early on purpose (``--only``): more steps are left."""
    SUPERSEDED = "superseded"
    """Replaced by a fresh run of the same checklist and parameters (``console run --new``), so
    only one of them is ever unfinished; what it launched has no purpose left."""
    MANUAL = "manual"
    """Instances launched by hand (``console instance launch``): no steps and no driver. The
    watchdog still holds them to their budget and runtime (the instance's own dead-man switch
    stands in for a console's heartbeat); never resumed."""

    @property
    def finished(self) -> bool:
        """True once nothing will drive it further on its own: whatever it launched has no purpose left."""
        return self in FINISHED

    @property
    def resumable(self) -> bool:
        """True when `console resume` would continue it (anything short of success, but a manual run)."""
        return self not in (RunStatus.SUCCEEDED, RunStatus.MANUAL, RunStatus.SUPERSEDED)


FINISHED = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.BLOCKED, RunStatus.CANCELLED, RunStatus.SUPERSEDED}
)
"""The statuses a run ends in (the watchdog's run-ended rule, the finished-at timestamp)."""


@dataclass(frozen=True)
class RunRecord:
    id: str
    checklist: str
    checklist_path: str
    profile: str
    params: dict[str, Any]
    status: RunStatus
    created_at: float
    updated_at: float
    finished_at: float | None
    heartbeat_at: float | None
    driver_pid: int | None
    summary: str


@dataclass(frozen=True)
class StepRecord:
    run_id: str
    idx: int
    name: str
    step: str
    state: str
    attempt: int
    plan: str
    started_at: float | None
    finished_at: float | None
    summary: str
    details: dict[str, Any]
    outputs: dict[str, Any]
    policy: dict[str, Any]
    """Retries, backoff_s and timeout_s of the step, as the engine recorded them."""

    @property
    def elapsed(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at


@dataclass(frozen=True)
class EventRecord:
    id: int
    run_id: str | None
    step: str | None
    ts: float
    kind: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True)
class InstanceRecord:
    id: str
    run_id: str | None
    provider: str
    instance_type: str
    zone: str
    state: str
    launched_at: float | None
    terminated_at: float | None
    terminate_reason: str
    data: dict[str, Any]


def to_json(data: Any) -> str:
    """Redacted, sorted JSON for a database column."""
    return json.dumps(redact_data(data), default=str, sort_keys=True)


def run_from_row(r: sqlite3.Row) -> RunRecord:
    return RunRecord(
        r["id"],
        r["checklist"],
        r["checklist_path"],
        r["profile"],
        json.loads(r["params"]),
        RunStatus(r["status"]),
        r["created_at"],
        r["updated_at"],
        r["finished_at"],
        r["heartbeat_at"],
        r["driver_pid"],
        r["summary"],
    )


def step_from_row(r: sqlite3.Row) -> StepRecord:
    return StepRecord(
        r["run_id"],
        r["idx"],
        r["name"],
        r["step"],
        r["state"],
        r["attempt"],
        r["plan"],
        r["started_at"],
        r["finished_at"],
        r["summary"],
        json.loads(r["details"]),
        json.loads(r["outputs"]),
        json.loads(r["policy"]),
    )


def event_from_row(r: sqlite3.Row) -> EventRecord:
    return EventRecord(r["id"], r["run_id"], r["step"], r["ts"], r["kind"], r["message"], json.loads(r["data"]))


def instance_from_row(r: sqlite3.Row) -> InstanceRecord:
    return InstanceRecord(
        r["id"],
        r["run_id"],
        r["provider"],
        r["instance_type"],
        r["zone"],
        r["state"],
        r["launched_at"],
        r["terminated_at"],
        r["terminate_reason"],
        json.loads(r["data"]),
    )
