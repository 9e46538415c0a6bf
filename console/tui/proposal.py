"""With no run to show, the console proposes one: a checklist's plan, started with one key.

`console tui` on an empty state shows the retrain checklist's steps and what each will do
(the lines `console plan` prints), greyed as "planned"; ``a`` starts it (after the usual
confirmation naming the cost) and the screen follows the new run. ``c`` opens a picker of
the shipped checklists and any the operator keeps beside them (`checklist_choices`).

Loading a checklist imports every step, so it happens in a worker (`OperatorApp.propose`);
this module holds the plain parts: the choices, the plan as rows, the picker.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from console.state import StepRecord

if TYPE_CHECKING:
    from console.checklist.spec import ChecklistSpec

DEFAULT_CHECKLIST = "retrain"
"""What an empty state proposes: the README's main job."""


@dataclass(frozen=True)
class Choice:
    """A checklist the operator can start: its name, where it is, and what it is for."""

    name: str
    path: Path
    description: str

    @property
    def label(self) -> str:
        return f"{self.name:<14} {self.description[:90]}"


@dataclass(frozen=True)
class Proposal:
    """A checklist loaded and planned, not started."""

    choice: str
    """What `console.steps.load_checklist` was given (a shipped name or a path)."""
    spec: ChecklistSpec
    plan: tuple[tuple[str, str, str], ...]
    """(name, step, what it will do) per step, as `console plan` prints them."""

    def rows(self) -> list[StepRecord]:
        """The plan as step records in the state "planned" (nothing is in the store)."""
        return [
            StepRecord("", i, name, step, "planned", 0, plan, None, None, plan, {}, {}, {})
            for i, (name, step, plan) in enumerate(self.plan)
        ]


def shipped_dir() -> Path:
    import console.checklist

    return Path(console.checklist.__file__).parent / "checklists"


def checklist_choices(extra_dirs: Sequence[Path] = ()) -> list[Choice]:
    """The shipped checklists, then the ``*.toml`` checklists in ``extra_dirs`` (the
    operator's copies: ``./checklists`` and the state directory's ``checklists``)."""
    found: list[Choice] = []
    for folder, shipped in [(shipped_dir(), True), *((Path(d), False) for d in extra_dirs)]:
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            try:
                head = tomllib.loads(path.read_text()).get("checklist")
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue  # not a checklist (or unreadable): not offered
            if not isinstance(head, dict):
                continue
            about = str(head.get("description") or head.get("name") or path.stem)
            found.append(Choice(path.stem if shipped else str(path), path, about))
    return found


class ChecklistPicker(ModalScreen["str | None"]):
    """Pick a checklist to propose (its plan is shown; nothing starts until ``a``)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, choices: Sequence[Choice]) -> None:
        super().__init__(classes="modal")
        self.choices = list(choices)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Start a checklist: pick one to see its plan", classes="dialog-title")
            yield OptionList(*[Option(c.label, id=str(i)) for i, c in enumerate(self.choices)], id="checklists")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option.id or 0)].name)

    def action_cancel(self) -> None:
        self.dismiss(None)
