"""The checklist engine: drives a persisted run step by step.

Promises:
- a run and all its steps are stored before anything happens, and every transition is
  stored (with its event) before the work it announces starts, so `kill -9` at any
  instant loses nothing;
- `drive` continues from the first unfinished step (a step found RUNNING was interrupted
  and is run again: steps are idempotent or detect their own partial work);
- one process at a time drives a run (an OS file lock, released by the kernel on death);
- retries with exponential backoff and a timeout per step come from the checklist, and
  are recorded with the run when it is created (and with each attempt);
- each step writes its own log file in the run directory, through the redactor;
- it is the only writer of step state: steps return results, and a step that must replace
  an earlier step's outputs (a relaunched instance) asks `Engine.supersede_outputs`;
- while it drives a run it beats the run's heartbeat in the store, and feeds each of the
  run's instances' dead-man switches through the instances service.

The engine knows nothing of front ends: they pass a listener and get `EngineEvent`s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from console.checklist.lock import RunLock, StartLock
from console.checklist.spec import ChecklistSpec, StepSpec
from console.checklist.step import StepContext, StepResult, StepState
from console.errors import (
    EXIT_GUARD,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STEP_FAILED,
    GuardRefused,
    Interrupted,
    StateError,
    exit_code_for,
    is_ours,
)
from console.outputs import NoOutputs, StepOutputs
from console.redact import RedactingFilter, redact, redact_data
from console.resources import Resources
from console.settings import Settings
from console.state import RunRecord, RunStatus, StateStore

HostHeartbeat = Callable[[str], object]
"""Feeds the dead-man switch of every live instance of a run; must never raise for a host it cannot reach."""
CANCEL_GRACE_S = 10.0


@dataclass(frozen=True)
class EngineEvent:
    """What the engine tells a front end: a transition, progress, or a log line."""

    kind: str
    """``step.<state>``, ``run.<status>``, ``progress``, ``log``, ``retry``, or a step's own kind."""
    run_id: str
    step: str | None
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


Listener = Callable[[EngineEvent], None]


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: RunStatus
    """succeeded, failed, blocked, cancelled, or paused (stopped early on purpose: --only)."""
    failed_step: str | None
    message: str
    exit_code: int
    """The documented exit code for this outcome (0 for succeeded and paused)."""


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def run_dir(settings: Settings, run_id: str) -> Path:
    return Path(settings.state_dir).expanduser() / "runs" / run_id


class Engine:
    """Creates and drives runs of a checklist against one state store."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        listener: Listener | None = None,
        *,
        resources: Resources | None = None,
        host_heartbeat: HostHeartbeat | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.listener = listener or (lambda event: None)
        self.resources = resources or Resources(settings)
        self.host_heartbeat = host_heartbeat or self._touch_instances
        self.cancelled = threading.Event()
        """Set by a front end (Ctrl-C, the TUI) to cancel the running step."""

    # -- creating ---------------------------------------------------------------------

    def plan(self, spec: ChecklistSpec) -> list[tuple[StepSpec, str]]:
        """Each step with its one-line plan. Touches nothing."""
        out = []
        for step in spec.steps:
            ctx = self._context("(plan)", step, attempt=0, log=logging.getLogger("rc.plan"))
            out.append((step, redact(step.step_cls().plan(ctx))))
        return out

    def create_run(self, spec: ChecklistSpec) -> str:
        """Persist a new run of ``spec`` with every step PENDING; returns its id."""
        run_id = new_run_id()
        planned = [(s.name, s.step, plan) for s, plan in self.plan(spec)]
        run_dir(self.settings, run_id).mkdir(parents=True, exist_ok=True)
        self.store.create_run(
            run_id,
            checklist=spec.name,
            checklist_path=spec.source,
            profile=self.settings.profile,
            params=spec.params,
            steps=planned,
            policies={s.name: s.policy for s in spec.steps},
        )
        self._tell(EngineEvent("run.created", run_id, None, f"run {run_id} created"))
        return run_id

    def find_resumable(self, spec: ChecklistSpec) -> RunRecord | None:
        """An unfinished run of the same checklist, profile and parameters, if one exists."""
        run = self.store.latest_unfinished_run(spec.name)
        if run is None or run.profile != self.settings.profile or run.params != redact_data(spec.params):
            return None
        if [s.name for s in self.store.steps(run.id)] != [s.name for s in spec.steps]:
            return None
        return run

    def claim_run(self, spec: ChecklistSpec, *, new: bool = False) -> tuple[RunRecord | None, str, RunLock]:
        """(the resumed run or None, the run id, its held `RunLock` for `drive`): resume or create
        as one decision under `StartLock`, so of two consoles started at once the later one finds
        the earlier one's run and its `RunLock` refuses it (`RunLocked`)."""
        with StartLock(self.settings.state_dir):
            existing = self.find_resumable(spec)
            if new and existing is not None:  # one unfinished run per checklist and parameters
                with RunLock(run_dir(self.settings, existing.id), existing.id):  # refused while driven
                    self.store.set_run_status(existing.id, RunStatus.SUPERSEDED, summary="replaced (--new)")
                existing = None
            run_id = existing.id if existing is not None else self.create_run(spec)
            lock = RunLock(run_dir(self.settings, run_id), run_id).__enter__()
        return existing, run_id, lock

    # -- driving ----------------------------------------------------------------------

    def drive(
        self,
        run_id: str,
        spec: ChecklistSpec,
        *,
        from_step: str | None = None,
        only: str | None = None,
        skip: dict[str, str] | None = None,
        lock: RunLock | None = None,
    ) -> RunOutcome:
        """Run the unfinished steps of ``run_id`` in order until one does not succeed (``lock``: the
        run's `RunLock` already held, from `claim_run`; released when done)."""
        if self.store.get_run(run_id) is None:
            raise StateError(f"no run {run_id!r} in {self.store.path}", hint="see `console runs`")
        lock = lock or RunLock(run_dir(self.settings, run_id), run_id)
        if not lock.held:
            lock.__enter__()
        try:
            return self._drive(run_id, spec, from_step=from_step, only=only, skip=skip)
        except BaseException as exc:
            self._abandoned(run_id, exc)
            raise
        finally:
            lock.__exit__(None, None, None)

    def _abandoned(self, run_id: str, exc: BaseException) -> None:
        """An error that ends the drive ends the run (failed; cancelled on Ctrl-C): never "running" undriven."""
        status = RunStatus.CANCELLED if isinstance(exc, (KeyboardInterrupt, Interrupted)) else RunStatus.FAILED
        with contextlib.suppress(Exception):
            run = self.store.get_run(run_id)
            if run is not None and run.status in (RunStatus.RUNNING, RunStatus.PENDING):
                self.store.set_run_status(run_id, status, summary=f"the console stopped: {_first_line(exc)}")

    def _drive(
        self, run_id: str, spec: ChecklistSpec, *, from_step: str | None, only: str | None, skip: dict[str, str] | None
    ) -> RunOutcome:
        skip = dict(skip or {})
        for name in [*skip, *(n for n in (from_step, only) if n)]:
            spec.index_of(name)  # unknown names are bad input, before anything runs
        start = spec.index_of(from_step) if from_step else 0

        with self._heartbeat(run_id):
            self.store.set_run_status(run_id, RunStatus.RUNNING, pid=os.getpid())
            self._tell(EngineEvent("run.running", run_id, None, f"driving run {run_id}"))
            for index, step in enumerate(spec.steps):
                record = self.store.get_step(run_id, step.name)
                if record is None:
                    raise StateError(
                        f"run {run_id} has no step {step.name!r}: its checklist changed since the run was created",
                        hint="start a fresh run with `console run --new`",
                    )
                if StepState(record.state).finished:
                    continue
                if index < start:
                    self._skip(run_id, step, f"--from {from_step}")
                    continue
                if step.name in skip:
                    self._skip(run_id, step, skip[step.name])
                    continue
                if only and step.name != only:
                    continue
                result = self._run_step(run_id, step, previous_attempts=record.attempt)
                if not result.state.finished:
                    status = {StepState.BLOCKED: RunStatus.BLOCKED, StepState.CANCELLED: RunStatus.CANCELLED}.get(
                        result.state, RunStatus.FAILED
                    )
                    self.store.set_run_status(run_id, status, summary=f"{step.name}: {result.summary}")
                    self._tell(EngineEvent(f"run.{status}", run_id, step.name, result.summary))
                    code = {RunStatus.BLOCKED: EXIT_GUARD, RunStatus.CANCELLED: EXIT_INTERRUPTED}.get(
                        status, int(result.details.get("exit_code", EXIT_STEP_FAILED))
                    )
                    return RunOutcome(run_id, status, step.name, result.summary, code)
            done = all(StepState(s.state).finished for s in self.store.steps(run_id))
            status = RunStatus.SUCCEEDED if done else RunStatus.PAUSED
            message = "all steps finished" if done else "stopped after the selected steps"
            self.store.set_run_status(run_id, status, summary=message)
            self._tell(EngineEvent(f"run.{status}", run_id, None, message))
            return RunOutcome(run_id, status, None, message, EXIT_OK)

    def _skip(self, run_id: str, step: StepSpec, reason: str) -> None:
        message = f"skipped: {reason}"
        self.store.update_step(run_id, step.name, StepState.SKIPPED.value, message=message, summary=message)
        self._tell(EngineEvent("step.skipped", run_id, step.name, message))

    # -- the only writes to step state from outside a step's own attempt ----------------------

    def supersede_outputs(
        self, run_id: str, step_name: str, outputs: StepOutputs, *, summary: str, reason: str
    ) -> None:
        """Replace a finished step's outputs (the relaunch case: the launch step's outputs now name
        the replacement instance); the step keeps its state, one event says why."""
        self.store.supersede_step_outputs(
            run_id,
            step_name,
            outputs=outputs.model_dump(mode="json"),
            summary=summary,
            message=f"{step_name}: {reason}",
        )
        self._tell(EngineEvent("outputs.superseded", run_id, step_name, reason))

    def reset_step(self, run_id: str, step_name: str, reason: str) -> None:
        """Make a finished step PENDING again, so the next drive runs it (``console train remote``)."""
        if self.store.get_step(run_id, step_name) is None:
            raise StateError(f"run {run_id} has no step {step_name!r}")
        self.store.update_step(run_id, step_name, StepState.PENDING.value, message=f"{step_name}: {reason}")
        self._tell(EngineEvent("step.pending", run_id, step_name, reason))

    def _run_step(self, run_id: str, step: StepSpec, *, previous_attempts: int) -> StepResult:
        """Attempts with retries and backoff; returns the last attempt's result."""
        max_attempts = step.retries + 1
        for n in range(1, max_attempts + 1):
            attempt = previous_attempts + n
            self.store.update_step(
                run_id,
                step.name,
                StepState.RUNNING.value,
                message=f"{step.name} started (attempt {attempt})",
                attempt=attempt,
                started_at=time.time(),
                clear_finished=True,
                policy=step.policy,
            )
            self._tell(EngineEvent("step.running", run_id, step.name, f"{step.name} started", {"attempt": attempt}))
            result = self._checked(step, self._attempt(run_id, step, attempt))
            self.store.update_step(
                run_id,
                step.name,
                result.state.value,
                message=f"{step.name} {result.state.value}: {result.summary}",
                finished_at=time.time(),
                summary=result.summary,
                details=result.details,
                outputs=result.outputs.model_dump(mode="json") if result.outputs is not None else None,
            )
            self._tell(
                EngineEvent(f"step.{result.state.value}", run_id, step.name, result.summary, {"attempt": attempt})
            )
            if result.state is not StepState.FAILED or n == max_attempts or not step.step_cls.retryable:
                return result
            delay = step.backoff_s * (2 ** (n - 1))
            self._tell(
                EngineEvent("retry", run_id, step.name, f"retrying {step.name} in {delay:.0f}s ({n}/{step.retries})")
            )
            self.store.add_event(run_id, step.name, "retry", f"retrying in {delay:.1f}s after: {result.summary}")
            if self.cancelled.wait(delay):
                return StepResult(StepState.CANCELLED, "cancelled while waiting to retry")
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _checked(step: StepSpec, result: StepResult) -> StepResult:
        """``result``, or a failure when a successful step hands on outputs other than its ``Outputs``."""
        expected = step.step_cls.Outputs
        if result.state is not StepState.SUCCEEDED or expected is NoOutputs and result.outputs is None:
            return result
        if not isinstance(result.outputs, expected):
            found = type(result.outputs).__name__
            return StepResult.failed(f"step {step.name} handed on {found}, not its {expected.__name__}")
        return result

    def _attempt(self, run_id: str, step: StepSpec, attempt: int) -> StepResult:
        """One attempt in a worker thread, bounded by the step's timeout and the cancel event."""
        with self._step_log(run_id, step, attempt) as log:
            ctx = self._context(run_id, step, attempt=attempt, log=log)
            box: dict[str, Any] = {}

            def work() -> None:
                try:
                    instance = step.step_cls()
                    instance.preflight(ctx)
                    box["result"] = instance.run(ctx)
                except BaseException as exc:  # handed to the driving thread
                    box["error"] = exc

            worker = threading.Thread(target=work, name=f"step-{step.name}", daemon=True)
            worker.start()
            timed_out = False
            try:
                while worker.is_alive():
                    worker.join(0.1)
                    if time.monotonic() > ctx.deadline and worker.is_alive():
                        timed_out = True
                        ctx.cancelled.set()
                        worker.join(CANCEL_GRACE_S)
                        break
                    if self.cancelled.is_set():
                        ctx.cancelled.set()
            except KeyboardInterrupt:
                self.cancelled.set()
                ctx.cancelled.set()
                log.warning("cancelled by the operator (Ctrl-C)")
                worker.join(CANCEL_GRACE_S)
                return StepResult(StepState.CANCELLED, "cancelled by the operator")

            if timed_out:
                log.error("timed out after %.0fs", step.timeout_s)
                return StepResult.failed(f"timed out after {step.timeout_s:.0f}s")
            error = box.get("error")
            if error is None:
                result = box.get("result")
                if not isinstance(result, StepResult):
                    return StepResult.failed(f"step returned {type(result).__name__}, not a StepResult")
                log.info("%s: %s", result.state.value, result.summary)
                return result
            if isinstance(error, GuardRefused):
                log.error("blocked: %s", error)
                return StepResult.blocked(str(error))
            if isinstance(error, (Interrupted, KeyboardInterrupt)) or (
                self.cancelled.is_set() and ctx.cancelled.is_set()
            ):
                log.warning("cancelled: %s", error)
                return StepResult(StepState.CANCELLED, "cancelled by the operator")
            if is_ours(error):
                log.error("failed: %s", error)
                return StepResult.failed(redact(str(error)), {"exit_code": exit_code_for(error)})
            log.error("failed with an unexpected error:\n%s", "".join(traceback.format_exception(error)))
            return StepResult.failed(f"unexpected {type(error).__name__}: {_first_line(error)}")

    def _context(self, run_id: str, step: StepSpec, *, attempt: int, log: logging.Logger) -> StepContext:
        cancelled = threading.Event()
        if self.cancelled.is_set():
            cancelled.set()

        def emit(kind: str, message: str, **data: Any) -> None:
            if run_id != "(plan)":
                if kind != "progress":  # progress is for the screen, not the record
                    self.store.add_event(run_id, step.name, kind, message, data)
                self._tell(EngineEvent(kind, run_id, step.name, redact(message), redact_data(data)))

        def supersede(step_name: str, outputs: StepOutputs, summary: str, reason: str) -> None:
            self.supersede_outputs(run_id, step_name, outputs, summary=summary, reason=f"{reason} (by {step.name})")

        return StepContext(
            run_id=run_id,
            step_name=step.name,
            attempt=attempt,
            params=step.params,
            settings=self.settings,
            state=self.store,
            log=log,
            run_dir=run_dir(self.settings, run_id),
            cancelled=cancelled,
            deadline=time.monotonic() + step.timeout_s,
            emit=emit,
            resources=self.resources,
            supersede=supersede,
        )

    @contextlib.contextmanager
    def _step_log(self, run_id: str, step: StepSpec, attempt: int) -> Iterator[logging.Logger]:
        """A logger writing to ``runs/<id>/<NN>-<step>.log`` (appended across attempts), redacted."""
        steps = [s.name for s in self.store.steps(run_id)]
        index = steps.index(step.name) + 1 if step.name in steps else 0
        path = run_dir(self.settings, run_id) / f"{index:02d}-{step.name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        logger = logging.getLogger(f"rc.run.{run_id}.{step.name}.{attempt}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
        forward = _ForwardHandler(lambda line: self._tell(EngineEvent("log", run_id, step.name, line)))
        for h in (handler, forward):
            h.addFilter(RedactingFilter())
            logger.addHandler(h)
        logger.info("--- attempt %d of %s", attempt, step.name)
        try:
            yield logger
        finally:
            for h in (handler, forward):
                logger.removeHandler(h)
                h.close()
            logging.Logger.manager.loggerDict.pop(logger.name, None)

    @contextlib.contextmanager
    def _heartbeat(self, run_id: str) -> Iterator[None]:
        """Tell the watchdog (and each instance's dead-man switch) this console is alive.

        The store heartbeat beats every few seconds; the host heartbeat (SSH to the instances)
        runs on its own thread at a third of the heartbeat timeout, so a slow host never
        delays the beat the watchdog reads.
        """
        stop = threading.Event()
        timeout = self.settings.watchdog.heartbeat_timeout_s
        every = max(0.5, min(5.0, timeout / 3))

        def beat() -> None:
            while True:
                with contextlib.suppress(Exception):  # a busy database must not kill the run
                    self.store.heartbeat(run_id)
                if stop.wait(every):
                    return

        def hosts() -> None:
            while True:
                with contextlib.suppress(Exception):  # an unreachable host is the service's to report
                    self.host_heartbeat(run_id)
                if stop.wait(max(1.0, timeout / 3)):
                    return

        threads = [
            threading.Thread(target=fn, name=name, daemon=True)
            for fn, name in ((beat, "heartbeat"), (hosts, "host-heartbeat"))
        ]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                thread.join(2)

    def _touch_instances(self, run_id: str) -> object:
        from console.instances import Instances

        return Instances(self.resources, self.store).touch_heartbeats(run_id)

    def _tell(self, event: EngineEvent) -> None:
        with contextlib.suppress(Exception):  # a broken front end must not break the run
            self.listener(event)


class _ForwardHandler(logging.Handler):
    def __init__(self, sink: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink(record.getMessage())


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return redact(lines[0]) if lines else ""
