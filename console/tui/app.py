"""The operator console: one screen with the checklist, GPU, cost, log and training panes.

Threads and the screen: the engine drives a run in a thread worker (`OperatorApp.drive`),
and a second thread worker follows the run through the state store and its log files
(`OperatorApp.follow`), a third takes hardware readings. Workers never touch widgets:
they post messages (`FeedUpdated`, `ReadingTaken`, `DriveFinished`) that the app handles
on its own thread. A run driven by another process (``--attach``) is followed the same
way; this console then only watches until that process lets go of the run.

The first frame comes first: nothing heavy is built or loaded before it. It shows the
panes' titled outlines (`opening_outlines`); the real panes (`main_panes`: a table,
sparklines, the log, the footer) replace them right after it is drawn. ``console tui`` hands
the app an opener (`OperatorApp.opening`) that loads settings and the state store in a
worker once the panes are up, and the engine, the checklist and pydantic load in the
workers that follow the run. An app given settings and a store directly (the tests)
starts following as soon as the panes are up.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState, get_current_worker

from console.errors import ConsoleError
from console.state import InstanceRecord, StateStore
from console.tui.feed import (
    FeedUpdate,
    GateVerifier,
    RunFeed,
    RunSnapshot,
    WatchdogView,
    landed_gate_verifier,
    landed_watchdog_status,
)
from console.tui.figures import (
    GateStatus,
    SymbolTraining,
    fold_training,
    gate_status,
    one_line,
    watchdog_label,
)
from console.tui.guarded import (
    LiveApprover,
    Terminator,
    instances_terminator,
    run_cost,
    store_live_approver,
    terminate_cost,
)
from console.tui.logpane import DEFAULT_CAP, LogPane
from console.tui.modals import ConfirmModal, QuitModal, ReasonModal, RunPicker
from console.tui.panes import ChecklistPane, CostPane, GpuPane, TrainingView
from console.tui.readings import Reading, ReadingSource, gpu_reading_from_event, host_reading

if TYPE_CHECKING:  # the engine, the checklist and settings load after the first frame, in workers
    from console.checklist.engine import Engine, EngineEvent, RunOutcome
    from console.checklist.spec import ChecklistSpec
    from console.resources import Resources
    from console.settings import Settings

RETRYABLE_STATES = ("failed", "blocked", "cancelled")

Opener = Callable[[], "tuple[Settings, StateStore, str | None]"]
"""Loads settings and the state store and names the run to show; runs in a worker after the first frame."""

_Handler = TypeVar("_Handler", bound=Callable[..., None])


def _finished(state: str) -> bool:
    """The engine's own test of a finished step (imported here: the engine is loaded by then)."""
    from console.checklist.step import StepState

    return StepState(state).finished


def _while_on_screen(handler: _Handler) -> _Handler:
    """A worker's message can arrive while the app is shutting down and its panes are gone: drop it."""

    @functools.wraps(handler)
    def guarded(self: "OperatorApp", *args: Any) -> None:
        try:
            handler(self, *args)
        except (NoMatches, IndexError):
            if not self._tearing_down():
                raise

    return guarded  # type: ignore[return-value]


# -- messages from the workers ---------------------------------------------------------------


class FeedUpdated(Message):
    """New events, log lines or records of the followed run."""

    def __init__(self, feed_id: int, update: FeedUpdate) -> None:
        super().__init__()
        self.feed_id = feed_id
        self.update = update


class ReadingTaken(Message):
    """A hardware reading for the GPU pane."""

    def __init__(self, reading: Reading | None) -> None:
        super().__init__()
        self.reading = reading


class EngineNotice(Message):
    """An engine event worth showing at once (progress, transitions) while this console drives."""

    def __init__(self, event: EngineEvent) -> None:
        super().__init__()
        self.event = event


class SpecLoaded(Message):
    """The followed run's checklist, loaded (or why it could not be)."""

    def __init__(self, feed_id: int, spec: ChecklistSpec | None, error: str | None = None) -> None:
        super().__init__()
        self.feed_id = feed_id
        self.spec = spec
        self.error = error


class StateOpened(Message):
    """The opener's settings, store and run (or the error that stopped it)."""

    def __init__(self, opened: "tuple[Settings, StateStore, str | None] | None", error: BaseException | None = None) -> None:
        super().__init__()
        self.opened = opened
        self.error = error


class DriveFinished(Message):
    """The engine stopped driving: the run's outcome."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__()
        self.outcome = outcome


# -- the screen's two faces ------------------------------------------------------------------


def opening_outlines() -> list[Widget]:
    """The first frame: the panes' titled outlines under a header saying what is loading.

    A handful of Statics, drawn before any table, sparkline, log or footer is built, so the
    operator sees the console at once; `main_panes` replace them a moment later.
    """
    return [
        Static("retrain-console │ opening…", id="header"),
        Horizontal(
            _outline("checklist", ChecklistPane.BORDER_TITLE),
            Vertical(_outline("gpu", GpuPane.BORDER_TITLE), _outline("cost", CostPane.BORDER_TITLE), id="side"),
            id="top",
        ),
        Horizontal(_outline("logs", LogPane.BORDER_TITLE), _outline("training", TrainingView.BORDER_TITLE), id="bottom"),
    ]


def _outline(pane_id: str, title: str) -> Static:
    outline = Static("", id=pane_id, classes="outline")
    outline.border_title = title
    return outline


def main_panes(log_cap: int) -> list[Widget]:
    """The operator console's panes: checklist, GPU, cost, log and training, the why line, the footer."""
    return [
        Static("", id="header"),
        Horizontal(
            ChecklistPane(id="checklist"),
            Vertical(GpuPane(id="gpu"), CostPane(id="cost"), id="side"),
            id="top",
        ),
        Horizontal(LogPane(cap=log_cap, id="logs"), TrainingView(id="training"), id="bottom"),
        Static("", id="why"),
        Footer(),
    ]


# -- the app -----------------------------------------------------------------------------------


class OperatorApp(App[None]):
    """`console tui`: drive or follow one checklist run."""

    CSS_PATH = "console.tcss"
    TITLE = "retrain-console"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("n", "run_next", "Run next"),
        Binding("a", "run_all", "Run all"),
        Binding("r", "retry", "Retry"),
        Binding("s", "skip", "Skip"),
        Binding("x", "cancel_step", "Cancel step"),
        Binding("t", "terminate", "Terminate"),
        Binding("L", "go_live", "Go live"),
        Binding("i", "details", "Details"),
        Binding("o", "pick_run", "Runs"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        settings: Settings | None,
        store: StateStore | None,
        *,
        run_id: str | None = None,
        config: str | None = None,
        clock: Callable[[], float] = time.time,
        readings: ReadingSource | None = host_reading,
        reading_every_s: float = 2.0,
        poll_s: float = 0.5,
        log_cap: int = DEFAULT_CAP,
        terminator: Terminator | None = None,
        live_approver: LiveApprover | None = None,
        gate_verifier: GateVerifier | None = None,
        watchdog_status: Callable[[], WatchdogView | None] | None = None,
        resources: Resources | None = None,
    ) -> None:
        super().__init__()
        self.resources: Resources | None = resources
        """What the settings describe (`console.resources`): the App's, or built when the settings load."""
        # Settings and the store are None only until the opener has run (`opening`; `self.opened`).
        self.settings: Settings = settings  # type: ignore[assignment]
        self.store: StateStore = store  # type: ignore[assignment]
        self.config = config
        self.run_id = run_id
        self.clock = clock
        """Every figure on screen is computed at ``clock()`` (fixed in snapshot tests)."""
        self.readings = readings
        self.reading_every_s = reading_every_s
        self.poll_s = poll_s
        self.log_cap = log_cap
        self.terminator = terminator
        self.live_approver = live_approver
        self.gate_verifier = gate_verifier
        """The gate module's check, run in the feed thread (it hashes model files)."""
        self.watchdog_status = watchdog_status
        self.spec: ChecklistSpec | None = None
        self.snapshot: RunSnapshot | None = None
        self.gate = GateStatus(False, "no gate record: the dry run must pass first")
        self.training: dict[str, SymbolTraining] = {}
        self.watchdog_seen_at: float | None = None
        self.gpu_event: Reading | None = None
        self.host: Reading | None = None
        self.driving = False
        """True while this console's engine worker drives the run."""
        self.feed_updates = 0
        """Feed updates applied (tests and the benchmark wait on it)."""
        self._feed_id = 0
        self._feed: RunFeed | None = None
        self._engine: Engine | None = None
        self._wake = threading.Event()
        self._texts: dict[str, str] = {}
        self._spec_error: str | None = None
        self._opener: Opener | None = None
        self.open_error: BaseException | None = None
        """Why the opener failed; `console tui` raises it once the screen is gone (one line, its exit code)."""
        self.ready = False
        """True once the screen shows the run's records (the first feed update with a snapshot is drawn)."""
        self.main_up = False
        """True once the real panes (`main_panes`) have replaced the opening outlines."""
        self.readings_taken = 0
        """Hardware readings received (a screenshot waits for a few, so the sparklines have a history)."""
        if settings is not None and store is not None:
            self._use(settings, store)

    @classmethod
    def opening(cls, opener: Opener, **kwargs: Any) -> "OperatorApp":
        """An app whose first frame needs neither settings nor the store: ``opener`` loads them
        in a worker once that frame is up (pydantic and the engine cost more than the frame)."""
        app = cls(None, None, **kwargs)
        app._opener = opener
        return app

    @property
    def opened(self) -> bool:
        """True once settings and the state store are loaded."""
        return self.settings is not None and self.store is not None

    def _use(self, settings: Settings, store: StateStore) -> None:
        """Take the loaded settings and store; wire the guarded actions and the feed's checks to them."""
        from console.resources import Resources

        self.settings, self.store = settings, store
        self.resources = self.resources or Resources(settings)
        self.terminator = self.terminator or instances_terminator(self.resources, store)
        self.gate_verifier = self.gate_verifier or landed_gate_verifier(self.resources, store)
        self.watchdog_status = self.watchdog_status or landed_watchdog_status(settings)

    # -- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield from opening_outlines()

    def _tearing_down(self) -> bool:
        """True once the app is exiting and its screens and panes are being removed."""
        if self._exit or self._closing or self._closed or not self.screen_stack:
            return True
        main = self.screen_stack[0]
        return main._closing or main._closed or any(w._closing or w._closed for w in main.walk_children())

    @property
    def _main(self) -> Screen:
        """The main screen (queries must not land on a modal that happens to be on top)."""
        return self.screen_stack[0]

    def on_mount(self) -> None:
        # The outlines are drawn first; the real panes replace them once they are on the terminal.
        self.call_after_refresh(self._build_panes)

    async def _build_panes(self) -> None:
        """Replace the opening outlines by the real panes; then follow the run, or first open the store."""
        if self._exit:
            return  # quit before the panes were built
        screen = self._main
        with self.batch_update():
            await screen.query_children().remove()
            await screen.mount_all(main_panes(self.log_cap))
        self.main_up = True
        self._main.query_one("#steps", DataTable).focus()
        if self.opened:
            self._start()
        else:
            self._set_text("#header", "retrain-console │ opening the state store…")
            # After a frame: the opener's imports hold the GIL while they run.
            self.call_after_refresh(self.open_state)

    def _start(self) -> None:
        """Follow the run, take readings, tick: everything after settings and the store are loaded."""
        self.follow_run(self.run_id)
        if self.readings is not None:
            self.take_readings()
        self.set_interval(1.0, self._tick)

    @work(thread=True, group="open", exclusive=True, exit_on_error=False)
    def open_state(self) -> None:
        """Run the opener off the UI thread; warm the engine's imports for the workers that follow."""
        assert self._opener is not None
        try:
            opened = self._opener()
            import console.checklist.engine  # noqa: F401 - pydantic and every step, loaded here once
        except BaseException as exc:  # noqa: BLE001 - `console tui` reports it once the screen is gone
            self.post_message(StateOpened(None, exc))
            return
        self.post_message(StateOpened(opened))

    @_while_on_screen
    def on_state_opened(self, message: StateOpened) -> None:
        if message.opened is None:
            self.open_error = message.error
            self.exit(return_code=1)
            return
        settings, store, self.run_id = message.opened
        self._use(settings, store)
        self._start()

    def on_unmount(self) -> None:
        self._wake.set()
        if self._engine is not None:
            self._engine.cancelled.set()

    # -- following a run -----------------------------------------------------------------

    def follow_run(self, run_id: str | None) -> None:
        """Show ``run_id`` (or no run) and follow it from now on."""
        self.run_id = run_id
        self.spec = None
        self.training = {}
        self.gpu_event = None
        self._main.query_one(LogPane).clear()
        self._main.query_one(TrainingView).reset()
        if run_id is not None:
            run = self.store.get_run(run_id)
            if run is None:
                self.notify(f"no run {run_id!r} in {self.store.path} (see `console runs`)", severity="error")
                self.run_id = None
        self._spec_error = None
        self._feed_id += 1
        if self.run_id is not None:
            self.load_spec(self.run_id, self._feed_id)
        self._feed = RunFeed(self.store, self.settings, self.run_id, keep_lines=self.log_cap, clock=self.clock,
                             gate_verifier=self.gate_verifier, watchdog_status=self.watchdog_status)
        self.follow(self._feed, self._feed_id)

    @work(thread=True, group="spec", exclusive=True, exit_on_error=False)
    def load_spec(self, run_id: str, feed_id: int) -> None:
        """Load the run's checklist off the UI thread (it imports every step: slow the first time)."""
        from console.steps import load_checklist

        run = self.store.get_run(run_id)
        try:
            if run is None:
                raise ConsoleError(f"no run {run_id!r}")
            self.post_message(SpecLoaded(feed_id, load_checklist(run.checklist_path, profile=run.profile, overrides=run.params)))
        except Exception as exc:  # noqa: BLE001 - the run is then followed only, and the reason shown
            self.post_message(SpecLoaded(feed_id, None, one_line(exc)))

    @_while_on_screen
    def on_spec_loaded(self, message: SpecLoaded) -> None:
        if message.feed_id != self._feed_id:
            return
        self.spec, self._spec_error = message.spec, message.error
        if message.error:
            self.notify(f"following only: {message.error}", severity="warning")
        self._set_text("#why", self._why())
        self.refresh_bindings()

    @work(thread=True, group="feed", exclusive=True, exit_on_error=False)
    def follow(self, feed: RunFeed, feed_id: int) -> None:
        """Poll the store and the log files; post what is new. Runs until cancelled."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            try:
                update = feed.poll()
            except Exception as exc:  # noqa: BLE001 - shown, then tried again
                self.call_from_thread(self.notify, one_line(exc), severity="error")
                update = None
                self._wake.wait(5.0)
            if update and not worker.is_cancelled:
                self.post_message(FeedUpdated(feed_id, update))
            self._wake.wait(self.poll_s)
            self._wake.clear()

    @work(thread=True, group="readings", exclusive=True, exit_on_error=False)
    def take_readings(self) -> None:
        """Hardware readings every few seconds, off the UI thread (a remote read may block)."""
        worker = get_current_worker()
        assert self.readings is not None
        while not worker.is_cancelled:
            try:
                reading = self.readings()
            except Exception:  # noqa: BLE001 - a failed reading is no reading, never a made-up one
                reading = None
            self.post_message(ReadingTaken(reading))
            deadline = time.monotonic() + self.reading_every_s
            while not worker.is_cancelled and time.monotonic() < deadline:
                time.sleep(min(0.25, self.reading_every_s))

    @_while_on_screen
    def on_feed_updated(self, message: FeedUpdated) -> None:
        if message.feed_id != self._feed_id:
            return  # from the feed of a run no longer shown
        update = message.update
        if update.log_lines:
            self._main.query_one(LogPane).add_lines(update.log_lines, read=update.log_lines_read)
        if fold_training(self.training, update.events):
            self._main.query_one(TrainingView).show(self.training)
        if update.watchdog_seen_at:
            self.watchdog_seen_at = update.watchdog_seen_at
        if update.gpu_reading:
            self.gpu_event = gpu_reading_from_event(update.gpu_reading)
            self._main.query_one(GpuPane).show(self.gpu_event, sandbox=self.settings.is_sandbox)
        if update.snapshot is not None:
            gate = gate_status(update.snapshot.gate, now=self.clock(), refusal=update.snapshot.gate_refusal)
            if update.snapshot != self.snapshot or gate != self.gate:  # unchanged records: nothing to draw
                self.snapshot, self.gate = update.snapshot, gate
                self._redraw()
            self.ready = True
        self.feed_updates += 1

    @_while_on_screen
    def on_reading_taken(self, message: ReadingTaken) -> None:
        self.host = message.reading
        self.readings_taken += 1
        if self._host_reading_applies():
            self._main.query_one(GpuPane).show(message.reading, sandbox=self.settings.is_sandbox)

    def _host_reading_applies(self) -> bool:
        """This host's CPU and memory stand in only where the run's instance is this host or there is none."""
        active = self._active_instances()
        if self.gpu_event is not None and active:
            return False  # the instance's own reading is shown
        return not active or self.settings.is_sandbox

    @_while_on_screen
    def _tick(self) -> None:
        """Once a second: elapsed times and cost move while something runs."""
        snap = self.snapshot
        if snap and (any(s.state == "running" for s in snap.steps) or self._active_instances()):
            self._redraw()
        else:
            self._draw_header()

    # -- drawing -------------------------------------------------------------------------

    def _redraw(self) -> None:
        now = self.clock()
        snap = self.snapshot
        if not self._host_reading_applies() and self.gpu_event is None:
            self._main.query_one(GpuPane).show(None, sandbox=False)  # a real instance and no reading of it yet
        self._main.query_one(ChecklistPane).show(snap.steps if snap else [], now)
        self._main.query_one(CostPane).show(snap.cost if snap else None, budget_usd=self.settings.budget.run_usd)
        self._draw_header()
        self._set_text("#why", self._why())
        self.refresh_bindings()

    def _set_text(self, selector: str, text: str) -> None:
        """Update a one-line Static only when its text changes (an idle screen then costs nothing)."""
        if self._texts.get(selector) != text:
            self._texts[selector] = text
            self._main.query_one(selector, Static).update(text)

    def _draw_header(self) -> None:
        if not self.opened:
            return  # the header says the store is being opened
        snap = self.snapshot
        run = snap.run if snap else None
        parts = [f"profile {self.settings.profile}"]
        view = snap.watchdog if snap else None
        watchdog = watchdog_label(
            view.running if view else None, view.last_pass_at if view else None, now=self.clock(),
            interval_s=self.settings.watchdog.interval_s, last_event_at=self.watchdog_seen_at,
        )
        if run is None:
            parts += ["no run", watchdog]
        else:
            parts += [f"run {run.id} ({run.checklist}, {run.status})", watchdog]
            if self.driving:
                parts.append("driving here")
            elif snap and snap.driven_elsewhere_or_here:
                parts.append(f"driven by pid {run.driver_pid}: following")
            elif run.status == "running":
                parts.append("interrupted: not being driven")
            else:
                parts.append("not being driven")
        self._set_text("#header", " │ ".join(parts))

    def _active_instances(self) -> list[InstanceRecord]:
        snap = self.snapshot
        if not snap:
            return []
        return [i for i in snap.instances if i.state not in ("terminated", "shutting-down")]

    # -- what is allowed now ---------------------------------------------------------------

    def _refusal(self, action: str) -> str | None:
        """Why ``action`` cannot be done now (one line), or None when it can."""
        if not self.opened and action not in ("details", "quit"):
            return "opening the state store"
        snap = self.snapshot
        run = snap.run if snap else None
        if action in ("run_next", "run_all", "retry", "skip"):
            if run is None:
                return "no run: press o to pick one"
            if self.spec is None:
                if self._spec_error:
                    return f"following only: {self._spec_error}"
                return f"loading checklist {run.checklist_path}"
            if self.driving:
                return "a step is running in this console"
            if snap and snap.driven_elsewhere_or_here:
                return f"run {run.id} is driven by pid {run.driver_pid}: following only"
            steps = snap.steps if snap else []
            if all(_finished(s.state) for s in steps):
                return f"run {run.id} has no unfinished step"
            selected = self._main.query_one(ChecklistPane).selected
            if action == "retry" and (selected is None or selected.state not in RETRYABLE_STATES):
                return "select a failed, blocked or cancelled step to retry"
            if action == "skip" and (selected is None or _finished(selected.state)):
                return "select an unfinished step to skip"
            return None
        if action == "cancel_step":
            return None if self.driving else "no step is running in this console"
        if action == "terminate":
            return None if self._active_instances() else "no instance of this run is running"
        if action == "go_live":
            return None if self.gate.passed else self.gate.reason
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Greys out (None) the bindings whose action is refused now; the why line says why."""
        if not self.main_up and action != "quit":
            return False  # the opening screen has no panes to act on
        if action in ("run_next", "run_all", "retry", "skip", "cancel_step", "terminate", "go_live"):
            return None if self._refusal(action) else True
        return True

    def _why(self) -> str:
        reasons = []
        for action, label in (("go_live", "go live"), ("run_next", "run")):
            why = self._refusal(action)
            if why and not (action == "run_next" and self.driving):
                reasons.append(f"{label}: {why}")
        return " · ".join(reasons)

    def _allowed(self, action: str) -> bool:
        why = self._refusal(action)
        if why:
            self.notify(why, severity="warning")
        return why is None

    # -- actions -------------------------------------------------------------------------------

    def action_run_next(self) -> None:
        if not self._allowed("run_next"):
            return
        step = next(s for s in self.snapshot.steps if not _finished(s.state))  # type: ignore[union-attr]
        self._confirm_drive(f"Run the next step: {step.name}", [step.name], {"only": step.name}, "Run step")

    def action_run_all(self) -> None:
        if not self._allowed("run_all"):
            return
        names = [s.name for s in self.snapshot.steps if not _finished(s.state)]  # type: ignore[union-attr]
        self._confirm_drive(f"Run all {len(names)} unfinished steps", names, {}, "Run all")

    def action_retry(self) -> None:
        if not self._allowed("retry"):
            return
        step = self._main.query_one(ChecklistPane).selected
        assert step is not None
        self._confirm_drive(f"Retry {step.name} (attempt {step.attempt + 1})", [step.name], {"only": step.name}, "Retry")

    def _confirm_drive(self, title: str, names: list[str], selection: dict[str, Any], label: str) -> None:
        instance_type = str((self.spec.params if self.spec else {}).get("instance_type") or self.settings.cloud.instance_type)
        cost = run_cost(names, settings=self.settings, instance_type=instance_type, active=self._active_instances())

        def answered(yes: bool | None) -> None:
            if yes:
                self._start_drive(selection)

        self.push_screen(ConfirmModal(title, cost, label), answered)

    def action_skip(self) -> None:
        if not self._allowed("skip"):
            return
        step = self._main.query_one(ChecklistPane).selected
        assert step is not None

        def answered(reason: str | None) -> None:
            if reason:
                self._start_drive({"skip": {step.name: reason}, "only": step.name})

        self.push_screen(ReasonModal(step.name), answered)

    def action_cancel_step(self) -> None:
        if not self._allowed("cancel_step"):
            return

        def answered(yes: bool | None) -> None:
            if yes and self._engine is not None:
                self._engine.cancelled.set()

        self.push_screen(
            ConfirmModal("Cancel the running step", "The running step is stopped; the run can be resumed later.", "Cancel step"),
            answered,
        )

    def action_terminate(self) -> None:
        if not self._allowed("terminate"):
            return
        instance = self._active_instances()[-1]
        line = self.snapshot.cost.line if self.snapshot and self.snapshot.cost else None  # type: ignore[union-attr]
        body = terminate_cost(instance, line if line and line.instance_id == instance.id else None)

        def answered(yes: bool | None) -> None:
            if yes:
                self.terminate_instance(instance.id)

        self.push_screen(ConfirmModal(f"Terminate {instance.id}", body, "Terminate"), answered)

    def action_go_live(self) -> None:
        if not self._allowed("go_live"):
            return
        gate_id = self.gate.gate_id
        assert gate_id is not None
        body = (
            f"Models checked by gate pass #{gate_id} start trading with real money at the exchange. "
            f"{self.gate.reason}."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                approve = self.live_approver or store_live_approver(self.store, self.run_id)
                try:
                    self.notify(approve(gate_id), title="Go live")
                except Exception as exc:  # noqa: BLE001 - the one place the TUI turns errors into output
                    self.notify(one_line(exc), severity="error")

        self.push_screen(ConfirmModal("Go live", body, "Go live"), answered)

    def action_details(self) -> None:
        if not self.main_up:
            return
        pane = self._main.query_one(ChecklistPane)
        pane.show_details = not pane.show_details
        pane.show_selected()

    def action_pick_run(self) -> None:
        if not self._allowed("pick_run"):
            return

        def picked(run_id: str | None) -> None:
            if run_id:
                self.follow_run(run_id)

        self.push_screen(RunPicker(self.store.list_runs(20)), picked)

    async def action_quit(self) -> None:
        """Quit; with an instance still running, ask: terminate, leave it to the watchdog, or stay."""
        active = self._active_instances()
        extra = " A step is running in this console: quitting cancels it." if self.driving else ""
        if active:
            names = ", ".join(f"{i.id} ({i.instance_type or i.provider})" for i in active)

            def answered(choice: str | None) -> None:
                if choice == "terminate":
                    self.terminate_instance(active[-1].id, then_exit=True)
                elif choice == "leave":
                    self._leave()

            self.push_screen(QuitModal(names, extra), answered)
        elif self.driving:
            self.push_screen(
                ConfirmModal("Quit", extra.strip() + " The run can be resumed later.", "Quit"),
                lambda yes: self._leave() if yes else None,
            )
        else:
            self._leave()

    def _leave(self) -> None:
        if self._engine is not None:
            self._engine.cancelled.set()
        self._wake.set()
        self.exit()

    @_while_on_screen
    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._main.query_one(ChecklistPane).show_selected()
        self.refresh_bindings()

    # -- the engine worker -----------------------------------------------------------------

    def _start_drive(self, selection: dict[str, Any]) -> None:
        if self.run_id is None or self.spec is None:
            return
        self.driving = True
        self.refresh_bindings()
        self._draw_header()
        self.drive(self.run_id, self.spec, selection)

    @work(thread=True, group="engine", exclusive=True, exit_on_error=False)
    def drive(self, run_id: str, spec: ChecklistSpec, selection: dict[str, Any]) -> None:
        """Drive the run with the same engine as `console run`; report through messages."""
        from console.checklist.engine import Engine

        engine = Engine(self.settings, self.store, listener=self._listen, resources=self.resources)
        self._engine = engine
        outcome = engine.drive(run_id, spec, **selection)
        self.post_message(DriveFinished(outcome))

    def _listen(self, event: EngineEvent) -> None:
        """Engine listener (engine threads): wake the feed; show progress at once."""
        self._wake.set()
        if event.kind == "progress" or event.kind.startswith("run."):
            self.post_message(EngineNotice(event))

    @_while_on_screen
    def on_engine_notice(self, message: EngineNotice) -> None:
        event = message.event
        if event.kind == "progress" and event.step:
            self._main.query_one(ChecklistPane).progress[event.step] = event.message
        elif event.kind.startswith("run.") and event.step:
            self._main.query_one(ChecklistPane).progress.pop(event.step, None)

    def on_drive_finished(self, message: DriveFinished) -> None:
        outcome = message.outcome
        where = f" at {outcome.failed_step}: {outcome.message}" if outcome.failed_step else f": {outcome.message}"
        severity = {"succeeded": "information", "paused": "information", "blocked": "warning"}.get(outcome.status, "error")
        self.notify(f"run {outcome.run_id} {outcome.status}{where}", severity=severity)  # type: ignore[arg-type]

    @_while_on_screen
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "engine" and event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.driving = False
            self._engine = None
            if self._feed is not None:
                self._feed.want_snapshot = True  # the lock is released now: show it
            if event.state == WorkerState.ERROR and worker.error is not None:
                self.notify(one_line(worker.error), severity="error")
            self._wake.set()
            self._draw_header()
            self.refresh_bindings()
        elif worker.group == "terminate" and event.state == WorkerState.ERROR and worker.error is not None:
            self.notify(one_line(worker.error), severity="error")

    @work(thread=True, group="terminate", exit_on_error=False)
    def terminate_instance(self, instance_id: str, then_exit: bool = False) -> None:
        """Terminate through the instances service in a thread; errors arrive as notifications."""
        try:
            result = self.terminator(instance_id)
        except Exception as exc:  # noqa: BLE001 - shown as the CLI would show it
            self.call_from_thread(self.notify, one_line(exc), severity="error")
            return
        self.call_from_thread(self.notify, result, title="Terminate")
        self._wake.set()
        if then_exit:
            self.call_from_thread(self._leave)

    # -- command palette ----------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every action in the palette; a refused one says why when chosen."""
        yield from super().get_system_commands(screen)
        for action, title, text in (
            ("run_next", "Run next step", "Run the first unfinished step (asks first, naming the cost)"),
            ("run_all", "Run all steps", "Run every unfinished step in order (asks first)"),
            ("retry", "Retry the selected step", "Run a failed, blocked or cancelled step again"),
            ("skip", "Skip the selected step", "Record it skipped, with a reason"),
            ("cancel_step", "Cancel the running step", "Stop the step this console is running"),
            ("terminate", "Terminate the instance", "Terminate this run's instance (asks first)"),
            ("go_live", "Go live", "Only with a valid gate pass (asks first)"),
            ("details", "Show or hide step details", "The selected step's result and details"),
            ("pick_run", "Follow a recent run", "Pick a run to follow"),
            ("quit", "Quit", "Leave; asks what to do with a running instance"),
        ):
            why = self._refusal(action)
            yield SystemCommand(title, f"{text}" + (f" — now: {why}" if why else ""), getattr(self, f"action_{action}"))
