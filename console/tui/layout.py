"""The screen's two faces: the first frame's titled outlines, then the real panes."""

from __future__ import annotations

from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Footer, Static

from console.tui.logpane import LogPane
from console.tui.panes import ChecklistPane, CostPane, GpuPane, TrainingView


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
        Horizontal(
            _outline("logs", LogPane.BORDER_TITLE), _outline("training", TrainingView.BORDER_TITLE), id="bottom"
        ),
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
