"""The operator console: one screen with the checklist, GPU, cost, log and training panes.

`OperatorApp` is `console.tui.viewer.RunViewer` (following a run and drawing it) plus what
the operator does: run the next step or all of them, retry, skip, cancel, terminate the
instance, go live, pick another run, quit. Every action first asks the policy
(`console.tui.policy`) and says why when it is refused; costly ones ask for confirmation
naming the cost (`console.tui.guarded`). The engine drives a run in a thread worker
(`OperatorApp.drive`) and reports through messages; terminating goes through the instances
service, in a worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from textual import work
from textual.app import SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable
from textual.worker import Worker, WorkerState

from console.state import StepRecord
from console.tui.figures import one_line
from console.tui.guarded import run_cost, store_live_approver, terminate_cost
from console.tui.messages import DriveFinished, EngineNotice, while_on_screen
from console.tui.modals import ConfirmModal, QuitModal, ReasonModal, RunPicker
from console.tui.panes import ChecklistPane
from console.tui.policy import PALETTE, finished
from console.tui.proposal import DEFAULT_CHECKLIST, ChecklistPicker, Proposal, checklist_choices
from console.tui.viewer import Opener, RunViewer

if TYPE_CHECKING:  # the engine and the checklist load after the first frame, in workers
    from console.checklist.engine import EngineEvent
    from console.checklist.spec import ChecklistSpec

__all__ = ["OperatorApp", "Opener"]


class ProposalLoaded(Message):
    """A checklist proposed with no run was loaded and planned (or could not be)."""

    def __init__(self, proposal: Proposal | None, error: str | None) -> None:
        super().__init__()
        self.proposal, self.error = proposal, error


class OperatorApp(RunViewer):
    """`console tui`: drive or follow one checklist run."""

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
        Binding("c", "pick_checklist", "Checklists"),
        Binding("q", "quit", "Quit"),
    ]

    report_path: Path | None = None
    """The newest run report this console wrote (after a drive ends)."""
    proposal: Proposal | None = None
    """With no run: the checklist planned on screen, started by ``a``."""
    proposal_choice: str = DEFAULT_CHECKLIST
    _proposal_error: str | None = None

    # -- with no run: a proposal --------------------------------------------------------------

    def follow_run(self, run_id: str | None) -> None:
        super().follow_run(run_id)
        self.proposal, self._proposal_error = None, None
        if self.run_id is None:
            self.propose(self.proposal_choice)

    @work(thread=True, group="proposal", exclusive=True, exit_on_error=False)
    def propose(self, choice: str) -> None:
        """Load and plan ``choice`` off the UI thread (loading a checklist imports every step)."""
        from console.checklist.engine import Engine
        from console.steps import load_checklist

        try:
            spec = load_checklist(choice, profile=self.settings.profile)
            engine = Engine(self.settings, self.store, resources=self.resources)
            plan = tuple((s.name, s.step, text) for s, text in engine.plan(spec))
            self.post_message(ProposalLoaded(Proposal(choice, spec, plan), None))
        except Exception as exc:  # noqa: BLE001 - shown on the plan line; another can be picked
            self.post_message(ProposalLoaded(None, f"{choice}: {one_line(exc)}"))

    @while_on_screen
    def on_proposal_loaded(self, message: ProposalLoaded) -> None:
        if self.run_id is not None:
            return  # a run was opened meanwhile
        self.proposal, self._proposal_error = message.proposal, message.error
        if message.error:
            self.notify(f"could not plan {message.error}", severity="error")
        self._redraw()

    def _steps_shown(self) -> Sequence[StepRecord]:
        if self.run_id is None and self.proposal is not None:
            return self.proposal.rows()
        return super()._steps_shown()

    def _proposed(self) -> str | None:
        return self.proposal.spec.name if self.run_id is None and self.proposal is not None else None

    def action_pick_checklist(self) -> None:
        if not self._allowed("pick_checklist"):
            return
        dirs = [Path.cwd() / "checklists", self.settings.state_dir / "checklists"]

        def picked(choice: str | None) -> None:
            if choice:
                self.proposal_choice = choice
                self.follow_run(None)

        self.push_screen(ChecklistPicker(checklist_choices(dirs)), picked)

    def _start_proposal(self) -> None:
        proposal = self.proposal
        assert proposal is not None
        names = [name for name, _, _ in proposal.plan]
        instance_type = str(proposal.spec.params.get("instance_type") or self.settings.cloud.instance_type)
        cost = run_cost(names, settings=self.settings, instance_type=instance_type, active=[])

        def answered(yes: bool | None) -> None:
            if yes and self.run_id is None and not self.driving:
                self.driving = True
                self.refresh_bindings()
                self.start_checklist(proposal)

        self.push_screen(ConfirmModal(f"Start {proposal.spec.name}: all {len(names)} steps", cost, "Start"), answered)

    @work(thread=True, group="engine", exclusive=True, exit_on_error=False)
    def start_checklist(self, proposal: Proposal) -> None:
        """Create the run (or take up the checklist's unfinished one), show it, and drive it."""
        from console.checklist.engine import Engine

        engine = Engine(self.settings, self.store, listener=self._listen, resources=self.resources)
        self._engine = engine
        existing = engine.find_resumable(proposal.spec)
        run_id = existing.id if existing is not None else engine.create_run(proposal.spec)
        self.call_from_thread(self._show_started, run_id, proposal.spec)
        self.post_message(DriveFinished(engine.drive(run_id, proposal.spec)))

    def _show_started(self, run_id: str, spec: ChecklistSpec) -> None:
        self.follow_run(run_id)
        self.spec = spec
        self._draw_header()

    # -- actions -------------------------------------------------------------------------------

    def action_run_next(self) -> None:
        if not self._allowed("run_next"):
            return
        step = next(s for s in self.snapshot.steps if not finished(s.state))  # type: ignore[union-attr]
        self._confirm_drive(f"Run the next step: {step.name}", [step.name], {"only": step.name}, "Run step")

    def action_run_all(self) -> None:
        if not self._allowed("run_all"):
            return
        if self.run_id is None:
            self._start_proposal()
            return
        names = [s.name for s in self.snapshot.steps if not finished(s.state)]  # type: ignore[union-attr]
        self._confirm_drive(f"Run all {len(names)} unfinished steps", names, {}, "Run all")

    def action_retry(self) -> None:
        if not self._allowed("retry"):
            return
        step = self._main.query_one(ChecklistPane).selected
        assert step is not None
        self._confirm_drive(
            f"Retry {step.name} (attempt {step.attempt + 1})", [step.name], {"only": step.name}, "Retry"
        )

    def _confirm_drive(self, title: str, names: list[str], selection: dict[str, Any], label: str) -> None:
        instance_type = str(
            (self.spec.params if self.spec else {}).get("instance_type") or self.settings.cloud.instance_type
        )
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
            ConfirmModal(
                "Cancel the running step", "The running step is stopped; the run can be resumed later.", "Cancel step"
            ),
            answered,
        )

    def action_terminate(self) -> None:
        if not self._allowed("terminate"):
            return
        instance = self._active_instances()[-1]
        line = self.snapshot.cost.line if self.snapshot and self.snapshot.cost else None
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
            f"Models checked by gate pass #{gate_id} start trading with real money at the exchange. {self.gate.reason}."
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

    @while_on_screen
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

    @while_on_screen
    def on_engine_notice(self, message: EngineNotice) -> None:
        event = message.event
        if event.kind == "progress" and event.step:
            self._main.query_one(ChecklistPane).progress[event.step] = event.message
        elif event.kind.startswith("run.") and event.step:
            self._main.query_one(ChecklistPane).progress.pop(event.step, None)

    def on_drive_finished(self, message: DriveFinished) -> None:
        outcome = message.outcome
        where = f" at {outcome.failed_step}: {outcome.message}" if outcome.failed_step else f": {outcome.message}"
        severity = {"succeeded": "information", "paused": "information", "blocked": "warning"}.get(
            outcome.status, "error"
        )
        self.notify(f"run {outcome.run_id} {outcome.status}{where}", severity=severity)  # type: ignore[arg-type]
        self.write_report(outcome.run_id)

    @work(thread=True, group="report", exclusive=True, exit_on_error=False)
    def write_report(self, run_id: str) -> None:
        """Write the run's report (`console report`) off the UI thread and name its path."""
        from console.report import default_path, write_report
        from runtime_checks.gate import GateCriteria

        try:
            rules = GateCriteria.from_settings(self.settings.gate).evidence_rules()
            path = write_report(self.store, run_id, default_path(self.settings.state_dir, run_id), gate_rules=rules)
        except Exception as exc:  # noqa: BLE001 - the run stands; say why there is no page
            self.call_from_thread(self.notify, f"report not written: {one_line(exc)}", severity="warning")
            return
        self.call_from_thread(self._report_written, path)

    def _report_written(self, path: Path) -> None:
        # On the UI thread, together: whoever sees `report_path` also finds its notification.
        self.report_path = path
        self.notify(f"report: {path}", title="Run report")

    @while_on_screen
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
        assert self.terminator is not None  # wired when the store opened
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
        for action, title, text in PALETTE:
            why = self._refusal(action)
            yield SystemCommand(title, f"{text}" + (f" — now: {why}" if why else ""), getattr(self, f"action_{action}"))
