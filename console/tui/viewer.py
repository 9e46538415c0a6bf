"""Following a run on the operator's screen: the first frame, the feed, the panes, what is allowed.

Threads and the screen: a thread worker follows the run through the state store and its
log files (`RunViewer.follow`), another takes hardware readings. Workers never touch
widgets: they post messages (`console.tui.messages`) that the app handles on its own
thread. A run driven by another process (``--attach``) is followed the same way.

The first frame comes first: nothing heavy is built or loaded before it. It shows the
panes' titled outlines (`console.tui.layout.opening_outlines`); the real panes replace
them right after it is drawn. ``console tui`` hands the app an opener (`RunViewer.opening`)
that loads settings and the state store in a worker once the panes are up, and the
engine, the checklist and pydantic load in the workers that follow the run. An app given
settings and a store directly (the tests) starts following as soon as the panes are up.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Self, Sequence

from textual import work
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from console.engine_progress import CoinBoard
from console.errors import ConsoleError
from console.state import InstanceRecord, StateStore, StepRecord
from console.tui.feed import (
    GateVerifier,
    RunFeed,
    RunSnapshot,
    WatchdogView,
    landed_gate_verifier,
    landed_watchdog_status,
)
from console.tui.figures import GateStatus, SymbolTraining, fold_training, gate_status, one_line, watchdog_label
from console.tui.guarded import LiveApprover, Terminator, instances_terminator
from console.tui.layout import main_panes, opening_outlines
from console.tui.logpane import DEFAULT_CAP, LogPane
from console.tui.messages import FeedUpdated, ReadingTaken, SpecLoaded, StateOpened, while_on_screen
from console.tui.panes import ChecklistPane, CostPane, GpuPane, TrainingView
from console.tui.policy import GUARDED_ACTIONS, View, refusal, why_line
from console.tui.readings import Reading, ReadingSource, gpu_reading_from_event, host_reading

if TYPE_CHECKING:  # the engine, the checklist and settings load after the first frame, in workers
    from console.checklist.engine import Engine
    from console.checklist.spec import ChecklistSpec
    from console.resources import Resources
    from console.settings import Settings

Opener = Callable[[], "tuple[Settings, StateStore, str | None]"]
"""Loads settings and the state store and names the run to show; runs in a worker after the first frame."""


class RunViewer(App[None]):
    """Follows one checklist run: opens the store, follows its records and logs, draws the panes,
    and knows what the operator may do now (`console.tui.policy`). `OperatorApp` adds the actions."""

    CSS_PATH = "console.tcss"
    TITLE = "retrain-console"
    ENABLE_COMMAND_PALETTE = True

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
        self.coins = CoinBoard()
        """The engine's coins by state (`console.engine_progress`), folded from the run's events."""
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
    def opening(cls, opener: Opener, **kwargs: Any) -> Self:
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

    @while_on_screen
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
        self.coins = CoinBoard()
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
        self._feed = RunFeed(
            self.store,
            self.settings,
            self.run_id,
            keep_lines=self.log_cap,
            clock=self.clock,
            gate_verifier=self.gate_verifier,
            watchdog_status=self.watchdog_status,
        )
        self.follow(self._feed, self._feed_id)

    @work(thread=True, group="spec", exclusive=True, exit_on_error=False)
    def load_spec(self, run_id: str, feed_id: int) -> None:
        """Load the run's checklist off the UI thread (it imports every step: slow the first time)."""
        from console.steps import load_checklist

        run = self.store.get_run(run_id)
        try:
            if run is None:
                raise ConsoleError(f"no run {run_id!r}")
            self.post_message(
                SpecLoaded(feed_id, load_checklist(run.checklist_path, profile=run.profile, overrides=run.params))
            )
        except Exception as exc:  # noqa: BLE001 - the run is then followed only, and the reason shown
            self.post_message(SpecLoaded(feed_id, None, one_line(exc)))

    @while_on_screen
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

    @while_on_screen
    def on_feed_updated(self, message: FeedUpdated) -> None:
        if message.feed_id != self._feed_id:
            return  # from the feed of a run no longer shown
        update = message.update
        if update.log_lines:
            self._main.query_one(LogPane).add_lines(update.log_lines, read=update.log_lines_read)
        if fold_training(self.training, update.events):
            self._main.query_one(TrainingView).show(self.training)
        if self.coins.fold(update.events):
            self._main.query_one(TrainingView).show_coins(self.coins.lines(self.clock()))
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

    @while_on_screen
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

    @while_on_screen
    def _tick(self) -> None:
        """Once a second: elapsed times and cost move while something runs."""
        snap = self.snapshot
        if self.coins.running():  # the running coins' times move
            self._main.query_one(TrainingView).show_coins(self.coins.lines(self.clock()))
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
        self._main.query_one(ChecklistPane).show(self._steps_shown(), now)
        self._main.query_one(CostPane).show(snap.cost if snap else None, budget_usd=self.settings.budget.run_usd)
        self._draw_header()
        self._set_text("#why", self._why())
        self.refresh_bindings()

    def _steps_shown(self) -> Sequence[StepRecord]:
        """The rows of the checklist pane: the run's steps (`OperatorApp` adds a proposal)."""
        return self.snapshot.steps if self.snapshot else []

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
            view.running if view else None,
            view.last_pass_at if view else None,
            now=self.clock(),
            interval_s=self.settings.watchdog.interval_s,
            last_event_at=self.watchdog_seen_at,
        )
        if run is None:
            parts += ["no run", watchdog]
            if view is not None and view.running is False:
                parts.append("the watchdog ends instances a run forgot; start it: console watchdog start")
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

    def _view(self) -> View:
        """The screen's state for the rules of `console.tui.policy`."""
        snap = self.snapshot
        selected = self._main.query_one(ChecklistPane).selected if self.main_up else None
        return View(
            opened=self.opened,
            run=snap.run if snap else None,
            steps=snap.steps if snap else [],
            spec_loaded=self.spec is not None,
            spec_error=self._spec_error,
            driving=self.driving,
            driven_elsewhere=bool(snap and snap.driven_elsewhere_or_here),
            selected=selected,
            active_instances=self._active_instances(),
            gate_passed=self.gate.passed,
            gate_reason=self.gate.reason,
            proposal=self._proposed(),
        )

    def _proposed(self) -> str | None:
        """The checklist proposed with no run (`OperatorApp`); a viewer proposes nothing."""
        return None

    def _refusal(self, action: str) -> str | None:
        """Why ``action`` cannot be done now (one line), or None when it can."""
        return refusal(action, self._view())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Greys out (None) the bindings whose action is refused now; the why line says why."""
        if not self.main_up and action != "quit":
            return False  # the opening screen has no panes to act on
        if action in GUARDED_ACTIONS:
            return None if self._refusal(action) else True
        return True

    def _why(self) -> str:
        return why_line(self._view())

    def _allowed(self, action: str) -> bool:
        why = self._refusal(action)
        if why:
            self.notify(why, severity="warning")
        return why is None
