"""The panes of the main screen: checklist, GPU, cost and per-symbol training.

Panes only draw what they are given (records and figures from `console.tui.feed` and
`console.tui.figures`); they never read the store or the clock themselves, so a screen
built from fixed records looks the same every time.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, ProgressBar, Sparkline, Static

from console.state import StepRecord
from console.tui.figures import CostFigures, SymbolTraining, details_text, format_duration, step_elapsed
from console.tui.readings import Reading, reading_label

STATE_STYLE = {
    "pending": "dim",
    "running": "bold cyan",
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "dim italic",
    "cancelled": "magenta",
    "blocked": "yellow",
}
STATE_MARK = {
    "pending": "·",
    "running": "▶",
    "succeeded": "✓",
    "failed": "✗",
    "skipped": "↷",
    "cancelled": "■",
    "blocked": "⊘",
}

HISTORY = 150
"""Samples kept for each sparkline (five minutes at one reading every two seconds)."""


COLUMNS = ("#", "step", "state", "try", "elapsed", "summary")


def cell_width(cell: Text | str) -> int:
    """Terminal cells ``cell`` takes on one line."""
    return cell_len(cell.plain if isinstance(cell, Text) else cell)


def column_widths(rows: Sequence[Sequence[Text | str]]) -> tuple[int, ...]:
    """Each column as wide as its label or its widest cell, whichever is wider."""
    return tuple(max([cell_len(label), *(cell_width(row[i]) for row in rows)]) for i, label in enumerate(COLUMNS))


class ChecklistPane(Vertical):
    """The run's steps in order: state, attempt, elapsed; the selected step's plan and, on demand, its result."""

    BORDER_TITLE = "Checklist"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.steps: list[StepRecord] = []
        self.show_details = False
        self.progress: dict[str, str] = {}
        """Latest progress label per running step (from the engine, when this console drives)."""
        self._widths: tuple[int, ...] = ()

    def compose(self) -> ComposeResult:
        table: DataTable[Text | str] = DataTable(id="steps", cursor_type="row", zebra_stripes=False)
        for label in COLUMNS:
            table.add_column(label, key=label)
        yield table
        yield Static("", id="plan")

    @property
    def table(self) -> DataTable[Text | str]:
        return self.query_one("#steps", DataTable)

    @property
    def selected(self) -> StepRecord | None:
        """The step under the cursor."""
        row = self.table.cursor_row
        return self.steps[row] if 0 <= row < len(self.steps) else None

    def show(self, steps: Sequence[StepRecord], now: float) -> None:
        """Redraw with ``steps``; the cursor stays on the same row.

        The columns get fixed widths, computed here with the rows they hold: a DataTable left
        to size its own columns does so later, when it is idle, and keeps lines it drew before
        that at the old widths, so the table could show rows of two widths at once.
        """
        table = self.table
        old_names = [s.name for s in self.steps]
        self.steps = list(steps)
        rows = [self._row(s, now) for s in self.steps]
        widths = column_widths(rows)
        if old_names != [s.name for s in self.steps] or widths != self._widths:
            cursor = table.cursor_row
            table.clear(columns=True)
            for label, width in zip(COLUMNS, widths, strict=True):
                table.add_column(label, width=width, key=label)
            self._widths = widths
            for step, row in zip(self.steps, rows, strict=True):
                table.add_row(*row, key=step.name)
            if self.steps:
                table.move_cursor(row=min(max(cursor, 0), len(self.steps) - 1), animate=False)
        else:
            for step, row in zip(self.steps, rows, strict=True):
                for column, value in zip(COLUMNS, row, strict=True):
                    if table.get_cell(step.name, column) != value:
                        table.update_cell(step.name, column, value)
        self.show_selected()

    def _row(self, step: StepRecord, now: float) -> tuple[Text | str, ...]:
        style = STATE_STYLE.get(step.state, "")
        state = Text(f"{STATE_MARK.get(step.state, '?')} {step.state}", style=style)
        summary = self.progress.get(step.name, "") if step.state == "running" else step.summary
        return (
            str(step.idx + 1),
            step.name,
            state,
            str(step.attempt or ""),
            format_duration(step_elapsed(step.started_at, step.finished_at, now)),
            Text(summary, overflow="ellipsis", no_wrap=True),
        )

    def show_selected(self) -> None:
        """Show the selected step's plan, and its result and details when asked for."""
        step = self.selected
        plan = self.query_one("#plan", Static)
        if step is None:
            plan.update("no run: c picks a checklist to start, o a recent run to follow")
            return
        text = Text.assemble(("plan: ", "bold"), step.plan or step.name)
        if self.show_details:
            text.append("\n")
            text.append(details_text(step.summary, step.details, step.outputs))
        plan.update(text)


class GpuPane(Vertical):
    """The instance's GPU (or, with no GPU, this host's CPU and memory) with sparklines."""

    BORDER_TITLE = "GPU"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.util: deque[float] = deque(maxlen=HISTORY)
        self.mem: deque[float] = deque(maxlen=HISTORY)
        self.kind: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("no reading yet", id="gpu-label")
        with Horizontal(classes="spark-row"):
            yield Static("util", classes="spark-name", id="util-name")
            yield Sparkline([], id="util-spark")
        with Horizontal(classes="spark-row"):
            yield Static("mem ", classes="spark-name")
            yield Sparkline([], id="mem-spark")

    def show(self, reading: Reading | None, *, sandbox: bool) -> None:
        """Add ``reading`` to the history and redraw; None: there is no reading (history cleared)."""
        if reading is None:
            self.util.clear()
            self.mem.clear()
            self.kind = None
            self.border_title = "GPU"
        else:
            if reading.kind != self.kind:  # a GPU appeared or went: old history means something else
                self.util.clear()
                self.mem.clear()
                self.kind = reading.kind
                self.border_title = "GPU" if reading.kind == "gpu" else "GPU · none here: host CPU/memory"
                self.query_one("#util-name", Static).update("util" if reading.kind == "gpu" else "cpu ")
            self.util.append(reading.util_pct or 0.0)
            self.mem.append(reading.mem_pct or 0.0)
        self.query_one("#gpu-label", Static).update(reading_label(reading, sandbox=sandbox))
        self.query_one("#util-spark", Sparkline).data = list(self.util)
        self.query_one("#mem-spark", Sparkline).data = list(self.mem)


class CostPane(Vertical):
    """Instance, zone, rate, elapsed, cost so far, projection, budget bar, savings."""

    BORDER_TITLE = "Cost"

    def compose(self) -> ComposeResult:
        yield Static("no instance launched by this run", id="cost-text")
        yield ProgressBar(total=1.0, show_eta=False, show_percentage=True, id="budget-bar")

    def show(self, figures: CostFigures | None, *, budget_usd: float) -> None:
        text = self.query_one("#cost-text", Static)
        bar = self.query_one("#budget-bar", ProgressBar)
        if figures is None:
            text.update(f"no instance launched by this run\nrun budget ${budget_usd:.2f}")
            bar.update(total=max(budget_usd, 0.01), progress=0)
            self.border_title = "Cost"
            return
        f, line = figures, figures.line
        rate = f"${line.rate_usd_per_h:.4f}/h" if line.rate_usd_per_h is not None else "no price recorded"
        lines = [
            f"{line.instance_id} · {line.instance_type or '?'} · {line.zone or '?'} · {f.state}",
            f"rate {rate} · up {format_duration(line.seconds)}",
            f"cost so far ${line.cost_usd:.2f} · projected ${f.projected_usd:.2f}",
        ]
        if line.savings_usd is not None:
            lines.append(f"saved ${line.savings_usd:.2f} against on-demand")
        lines.append(f"run ${f.run_total_usd:.2f} of ${f.budget_usd:.2f} budget")
        text.update("\n".join(lines))
        bar.update(total=max(f.budget_usd, 0.01), progress=min(f.run_total_usd, f.budget_usd))
        self.border_title = "Cost · sandbox figures" if f.sandbox else "Cost"


class TrainingView(VerticalScroll):
    """Epoch, loss and validation metric per symbol, with a small loss plot each; for the engine's
    hundreds of coins, their board instead (`console.engine_progress.CoinBoard.lines`)."""

    BORDER_TITLE = "Training"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._rows: dict[str, tuple[Static, Sparkline]] = {}

    def compose(self) -> ComposeResult:
        yield Static("no training progress yet", id="training-empty")
        board = Static("", id="engine-board")
        board.display = False
        yield board

    def reset(self) -> None:
        """Forget every symbol (another run is shown)."""
        for row in self.query(".train-row"):
            row.remove()
        self._rows.clear()
        self.query_one("#training-empty", Static).display = True
        self.show_coins([])

    def show_coins(self, lines: Sequence[str]) -> None:
        """The engine's board: counts by state, the slowest running, the failed with their reason."""
        board = self.query_one("#engine-board", Static)
        board.display = bool(lines)
        self.border_title = "Training · engine" if lines else self.BORDER_TITLE
        if self.parent is not None:
            self.parent.set_class(bool(lines), "engine")  # the board takes half the row, the log the other
        if not lines:
            return
        self.query_one("#training-empty", Static).display = False
        text = Text(lines[0], style="bold")
        for line in lines[1:]:
            style = "red" if line.startswith(("failed", "  ")) else "dim" if line.startswith("skipped") else ""
            text.append("\n")
            text.append(line, style=style)
        board.update(text)

    def show(self, progress: dict[str, SymbolTraining]) -> None:
        if progress:
            self.query_one("#training-empty", Static).display = False
        for symbol in sorted(progress):
            row = progress[symbol]
            if symbol not in self._rows:
                label, spark = Static(classes="train-label"), Sparkline([], classes="train-spark")
                self.mount(Vertical(label, spark, classes="train-row"))
                self._rows[symbol] = (label, spark)
            label, spark = self._rows[symbol]
            label.update(training_label(row))
            spark.data = list((row.rewards if row.reward is not None else row.losses)[-HISTORY:])


def training_label(row: SymbolTraining) -> str:
    """One symbol's line: epoch, loss, validation metric; a deep-Q agent's episode and reward
    instead; the report's path once it is written."""
    epochs = f"/{row.epochs}" if row.epochs else ""
    job = f" · {row.job_state}" if row.job_state else ""
    if row.reward is not None or row.report:
        reward = f"{row.reward:+.4f}" if row.reward is not None else "–"
        line = f"{row.symbol} episode {row.epoch}{epochs} reward {reward}{job}"
    else:
        loss = f"{row.loss:.3f}" if row.loss is not None else "–"
        metric = f"{row.val_metric:.3f}" if row.val_metric is not None else "–"
        line = f"{row.symbol} ep {row.epoch}{epochs} loss {loss} val {metric}{job}"
    if row.report:
        verdict = "passed" if row.passed else "did not pass"
        line += f"\n{verdict} · report: {row.report}"
    return line
