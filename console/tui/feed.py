"""Following a run through the state store and its log files. No Textual here.

`RunFeed.poll` is called from a worker thread every half second (or sooner when the
engine pokes it). It reads only what is new: events after the last id it saw, log bytes
after the last offset of each step log. The same path serves a run this console drives
and a run another process drives (``--attach``): both write to the same store and files.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from console.state import EventRecord, InstanceRecord, RunRecord, StateStore, StepRecord
from console.tui.figures import GPU_EVENT_KINDS, WATCHDOG_EVENT_PREFIX, CostFigures, run_cost_figures

if TYPE_CHECKING:
    from console.resources import Resources
    from console.settings import Settings

SNAPSHOT_EVERY_S = 5.0
"""Re-read steps, instances and the gate at least this often even with no new events
(a driver killed with -9 writes no event; a gate pass expires on its own)."""

MAX_READ_BYTES = 64 * 1024 * 1024
"""Most log bytes read from one file in one poll, so a runaway log cannot stall the feed."""


@dataclass(frozen=True)
class WatchdogView:
    """The watchdog as its own status files say (``console watchdog status``)."""

    running: bool
    pid: int | None
    last_pass_at: float | None
    error: str | None


GateVerifier = Callable[[], Any]
"""Raises (one line) when the gate refuses the current models; may be slow (hashes files)."""

VERIFY_EVERY_S = 30.0
"""How often a passing gate is verified again against the files (model files can change)."""


@dataclass(frozen=True)
class RunSnapshot:
    """The run's records as they are now."""

    run: RunRecord | None
    steps: list[StepRecord]
    instances: list[InstanceRecord]
    cost: CostFigures | None
    """The cost pane's figures, computed at the feed's clock when this snapshot was taken."""
    gate: dict[str, Any] | None
    driven_elsewhere_or_here: bool
    """True while some process (this one included) holds the run's lock."""
    gate_refusal: str | None = None
    """Why the gate's own verification refused the latest pass (None: it did not refuse, or did not run)."""
    watchdog: WatchdogView | None = None


@dataclass
class FeedUpdate:
    """What is new since the last poll."""

    events: list[EventRecord] = field(default_factory=list)
    """New events of this run, oldest first."""
    log_lines: list[str] = field(default_factory=list)
    """The newest new log lines (at most the feed's ``keep_lines``)."""
    log_lines_read: int = 0
    """How many new lines there were, including older ones cut to keep within ``keep_lines``."""
    snapshot: RunSnapshot | None = None
    watchdog_seen_at: float | None = None
    gpu_reading: dict[str, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.events or self.log_lines or self.snapshot or self.watchdog_seen_at or self.gpu_reading)


class RunFeed:
    """Incremental reader of one run (or of no run: then only the watchdog and gate)."""

    def __init__(
        self,
        store: StateStore,
        settings: Settings,
        run_id: str | None,
        *,
        keep_lines: int = 10_000,
        gate_verifier: GateVerifier | None = None,
        watchdog_status: Callable[[], WatchdogView | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.run_id = run_id
        self.last_event_id = 0
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}
        self._last_snapshot_at: float | None = None
        self._busy = False
        self.want_snapshot = False
        """Set (from any thread) to have the next poll re-read the records."""
        self.keep_lines = keep_lines
        self.clock = clock
        """The time cost figures are computed at (the app's clock)."""
        self.gate_verifier = gate_verifier
        self.watchdog_status = watchdog_status
        self._verified: tuple[Any, float, str | None] | None = None
        """Most lines one poll hands over (the log pane keeps no more than this anyway)."""
        self.log_lines_total = 0
        self.dropped_lines = 0
        """Lines read but not handed over because a newer ``keep_lines`` followed them in one poll."""

    def poll(self) -> FeedUpdate:
        """Everything new since the last call; the first call returns the run's whole history."""
        update = FeedUpdate()
        while True:  # page through: the first poll of a long history takes several
            page = self.store.events(None, after_id=self.last_event_id, limit=5000)
            if not page:
                break
            self.last_event_id = page[-1].id
            for event in page:
                if event.kind.startswith(WATCHDOG_EVENT_PREFIX):
                    update.watchdog_seen_at = max(update.watchdog_seen_at or 0.0, event.ts)
                if event.run_id == self.run_id and self.run_id is not None:
                    update.events.append(event)
                    if event.kind in GPU_EVENT_KINDS:
                        update.gpu_reading = dict(event.data, ts=event.ts)
            if len(page) < 5000:
                break
        if self.run_id is not None:
            before = self.log_lines_total
            update.log_lines = self._read_logs()
            update.log_lines_read = self.log_lines_total - before
        now = time.monotonic()
        due = self._last_snapshot_at is None or now - self._last_snapshot_at >= SNAPSHOT_EVERY_S
        if update.events or due or self.want_snapshot or self._busy:
            # While some process holds the run, re-read every poll: its lock goes without an event.
            # While an instance runs, its cost moves every second.
            self.want_snapshot = False
            update.snapshot = self.snapshot()
            self._last_snapshot_at = now
            snap = update.snapshot
            self._busy = snap.driven_elsewhere_or_here or bool(snap.cost and snap.cost.line.live)
        return update

    def snapshot(self) -> RunSnapshot:
        """The run's records now (also used once before the first poll to draw the screen)."""
        run = self.store.get_run(self.run_id) if self.run_id else None
        steps = self.store.steps(run.id) if run else []
        instances = self.store.instances(run_id=run.id) if run else []
        cost = run_cost_figures(self.store, self.settings, run.id, now=self.clock()) if run and instances else None
        gate_row = self.store.latest_gate()
        gate = _row(gate_row) if gate_row is not None else None
        from console.checklist.engine import run_dir  # the engine (pydantic) loads in the feed thread
        from console.checklist.lock import RunLock

        held = run is not None and RunLock.is_held(run_dir(self.settings, run.id))
        watchdog = None
        if self.watchdog_status is not None:
            try:
                watchdog = self.watchdog_status()
            except Exception:  # noqa: BLE001 - an unreadable status file reads as "not known"
                watchdog = None
        return RunSnapshot(run, steps, instances, cost, gate, held, self._verify(gate), watchdog)

    def _verify(self, gate: dict[str, Any] | None) -> str | None:
        """The gate module's verdict on a pass the table shows (cached; redone on a new record or every 30 s)."""
        if self.gate_verifier is None or gate is None or not gate.get("passed"):
            return None
        now = time.monotonic()
        if (
            self._verified is not None
            and self._verified[0] == gate.get("id")
            and now - self._verified[1] < VERIFY_EVERY_S
        ):
            return self._verified[2]
        try:
            self.gate_verifier()
            refusal = None
        except Exception as exc:  # noqa: BLE001 - its one line is the reason shown
            refusal = (str(exc).strip().splitlines() or ["the gate refused"])[0]
        self._verified = (gate.get("id"), now, refusal)
        return refusal

    def _read_logs(self) -> list[str]:
        """New complete lines of the run's step logs, at most ``keep_lines`` of them (the newest).

        `log_lines_total` counts every new line, kept or not. Cutting here, on bytes, keeps
        hours of output from ever reaching the screen's thread.
        """
        from console.checklist.engine import run_dir

        directory = run_dir(self.settings, self.run_id or "")
        if not directory.is_dir():
            return []
        chunks: list[bytes] = []
        for path in sorted(directory.glob("*.log")):
            offset = self._offsets.get(path, 0)
            try:
                size = path.stat().st_size
                if size < offset:  # truncated or replaced: start again
                    offset, self._partial[path] = 0, b""
                if size == offset:
                    continue
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read(MAX_READ_BYTES)
            except OSError:
                continue
            self._offsets[path] = offset + len(chunk)
            data = self._partial.get(path, b"") + chunk
            cut = data.rfind(b"\n") + 1
            self._partial[path] = data[cut:]
            if cut:
                chunks.append(data[:cut])
        if not chunks:
            return []
        data = b"".join(chunks)
        count = data.count(b"\n")
        self.log_lines_total += count
        start = len(data)
        for _ in range(min(count, self.keep_lines) + 1):
            start = data.rfind(b"\n", 0, start) if start > 0 else -1
            if start < 0:
                break
        lines = data[start + 1 : -1].decode("utf-8", "replace").split("\n")
        self.dropped_lines += count - len(lines)
        return lines


def landed_gate_verifier(resources: "Resources", store: StateStore) -> GateVerifier:
    """`console gate verify`'s check (`console.checking.verify`) for the default models dir."""

    def verify() -> None:
        from console import checking  # heavy (runtime checks, training): loaded in the feed thread

        checking.verify(resources, store, resources.paths.models)

    return verify


def landed_watchdog_status(settings: Settings) -> Callable[[], WatchdogView | None]:
    """Reads the watchdog's lock and status file (`console.watchdog.watchdog_status`)."""

    def read() -> WatchdogView | None:
        from console.watchdog import watchdog_status

        status = watchdog_status(settings)
        last = status.last_pass or {}
        last_at = last.get("last_pass_at")
        return WatchdogView(status.running, status.pid, float(last_at) if last_at else None, last.get("error") or None)

    return read


def _row(row: sqlite3.Row) -> dict[str, Any]:
    return {key: row[key] for key in row.keys()}
