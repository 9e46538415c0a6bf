"""Modal screens: confirm a costly or destructive action, ask a skip reason, quit, pick a run.

Each modal dismisses with its answer; Escape is always the safe answer (cancel, stay).
"""

from __future__ import annotations

from typing import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from console.state import RunRecord


class ConfirmModal(ModalScreen[bool]):
    """Asks to confirm one action; the body names what it costs or destroys."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, cost: str, confirm_label: str) -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.cost = cost
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.cost, id="modal-body", classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.confirm_label, variant="error", id="confirm")
                yield Button("Cancel", variant="primary", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()  # the safe answer is the default

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)


class ReasonModal(ModalScreen["str | None"]):
    """Asks why a step is skipped; an empty reason is not accepted."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, step: str) -> None:
        super().__init__(classes="modal")
        self.step = step

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Skip {self.step}", classes="dialog-title")
            yield Static("The reason is recorded with the run. Enter to skip, Esc to cancel.", classes="dialog-body")
            yield Input(placeholder="why is it skipped?", id="reason")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Skip step", variant="warning", id="confirm")
                yield Button("Cancel", variant="primary", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._answer(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self._answer(self.query_one("#reason", Input).value)
        else:
            self.dismiss(None)

    def _answer(self, value: str) -> None:
        if not value.strip():
            self.notify("a reason is required to skip a step", severity="warning")
            return
        self.dismiss(value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class QuitModal(ModalScreen[str]):
    """Quitting with an instance still running: terminate it, leave it to the watchdog, or stay."""

    BINDINGS = [Binding("escape", "stay", "Stay")]

    def __init__(self, instances: str, extra: str = "") -> None:
        super().__init__(classes="modal")
        self.instances = instances
        self.extra = extra

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("An instance is still running", classes="dialog-title")
            yield Static(f"{self.instances} is still running and costing money.{self.extra}", classes="dialog-body")
            with Grid(classes="dialog-choices"):
                yield Button("Terminate it and quit", variant="error", id="terminate")
                yield Button("Leave it to the watchdog", variant="warning", id="leave")
                yield Button("Stay", variant="primary", id="stay")

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(str(event.button.id))

    def action_stay(self) -> None:
        self.dismiss("stay")


class RunPicker(ModalScreen["str | None"]):
    """Pick one of the recent runs to follow."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, runs: Sequence[RunRecord]) -> None:
        super().__init__(classes="modal")
        self.runs = list(runs)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Follow a recent run", classes="dialog-title")
            if not self.runs:
                yield Static("no runs yet: start one with `console tui --checklist retrain`", classes="dialog-body")
            yield OptionList(
                *[
                    Option(f"{r.id}  {r.checklist:<10} {r.profile:<7} {r.status:<9} {r.summary[:40]}", id=r.id)
                    for r in self.runs
                ],
                id="runs",
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
