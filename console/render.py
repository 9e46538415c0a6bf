"""Headless views of a run: Rich on a terminal, plain lines when piped, JSON lines with --json.

Each renderer is an engine listener; all three show the same events.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from console.checklist.engine import EngineEvent
from console.engine_progress import COIN_EVENT, QUEUED_EVENT

STATE_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "blocked": "yellow",
    "skipped": "dim",
    "cancelled": "magenta",
    "running": "cyan",
}


class JsonRenderer:
    """One JSON object per line per event, for scripts."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, event: EngineEvent) -> None:
        record = {
            "ts": round(event.ts, 3),
            "kind": event.kind,
            "run_id": event.run_id,
            "step": event.step,
            "message": event.message,
            **({"data": event.data} if event.data else {}),
        }
        with self._lock:
            self.out.write(json.dumps(record, default=str) + "\n")
            self.out.flush()

    def close(self) -> None:
        pass


class PlainRenderer:
    """Plain timestamped lines (for pipes and CI logs); no log lines, just transitions."""

    def __init__(self, out: IO[str] | None = None, *, verbose: bool = False) -> None:
        self.out = out or sys.stdout
        self.verbose = verbose
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, event: EngineEvent) -> None:
        if event.kind == "log" and not self.verbose or event.kind in ("progress", "run.created", "run.running"):
            return
        if event.kind in (COIN_EVENT, QUEUED_EVENT):
            return  # one per coin and change: the step's progress line counts them
        if event.kind.startswith("run."):
            return  # the command prints the run's outcome itself
        stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
        if event.kind == "step.running" and event.step:
            self._started[event.step] = event.ts
        elapsed = ""
        if event.kind.startswith("step.") and event.kind != "step.running" and event.step in self._started:
            elapsed = f" ({event.ts - self._started[event.step]:.1f}s)"
        label = event.kind.removeprefix("step.").upper() if event.kind.startswith("step.") else event.kind
        step = f"{event.step:<14} " if event.step else ""
        with self._lock:
            self.out.write(f"{stamp} {step}{label:<10} {event.message}{elapsed}\n")
            self.out.flush()

    def close(self) -> None:
        pass


class RichRenderer:
    """A spinner and elapsed time for the running step, a line per finished step, progress bars."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._started: dict[str, float] = {}
        self.progress.start()

    def __call__(self, event: EngineEvent) -> None:
        step = event.step
        if event.kind == "step.running" and step:
            self._started[step] = event.ts
            if step not in self._tasks:
                self._tasks[step] = self.progress.add_task(step, total=None, detail=event.message)
        elif event.kind == "progress" and step in self._tasks:
            total = event.data.get("total") or None
            self.progress.update(
                self._tasks[step], completed=event.data.get("done", 0), total=total, detail=event.data.get("label", "")
            )
        elif event.kind.startswith("step.") and step:
            task = self._tasks.pop(step, None)
            if task is not None:
                self.progress.remove_task(task)
            state = event.kind.removeprefix("step.")
            took = f" [dim]{event.ts - self._started[step]:.1f}s[/]" if step in self._started else ""
            style = STATE_STYLE.get(state, "white")
            self.console.print(f"[{style}]{state.upper():<9}[/] [bold]{step:<14}[/] {_escape(event.message)}{took}")
        elif event.kind == "retry":
            self.console.print(f"[yellow]RETRY[/]     [bold]{step or '':<14}[/] {_escape(event.message)}")

    def close(self) -> None:
        self.progress.stop()


def output_console() -> Console:
    """The console for tables on stdout: the terminal's width, or wide enough not to wrap
    cells when piped to a file or another program (which read lines, not screens)."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def pick_renderer(*, json_lines: bool, verbose: bool = False) -> Any:
    """JSON when asked, Rich on a terminal, plain lines otherwise."""
    if json_lines:
        return JsonRenderer()
    if sys.stdout.isatty():
        return RichRenderer()
    return PlainRenderer(verbose=verbose)
