"""The log pane: follows the end unless the operator scrolls up, searches with `/`, keeps a capped tail.

Lines arrive in batches (from the feed worker). A batch larger than the cap is cut to its
last ``cap`` lines before it reaches the widget, so ingesting hours of output costs the
same as ingesting the last screenful; the pane still counts every line it was given.
"""

from __future__ import annotations

from typing import Sequence

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Log, Static

DEFAULT_CAP = 10_000
"""Lines kept by default; older ones are dropped (the step log files keep everything)."""


class LogPane(Vertical):
    """The live log of the run's steps."""

    BORDER_TITLE = "Log"
    BINDINGS = [
        Binding("slash", "search", "Search log", show=True),
        Binding("end", "follow", "Follow end", show=False),
    ]

    def __init__(self, *, cap: int = DEFAULT_CAP, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.cap = cap
        self.total_lines = 0
        """Every line ingested since the pane was made (not only the kept ones)."""
        self.new_lines = 0
        """Lines that arrived while the operator was scrolled up."""
        self._matches: list[int] = []
        self._match_at = -1

    def compose(self) -> ComposeResult:
        yield Log(max_lines=self.cap, auto_scroll=False, id="log")
        yield Static("", id="log-marker")
        yield Input(placeholder="search the log (Enter: previous match, Esc: close)", id="log-search")

    def on_mount(self) -> None:
        self.query_one("#log-marker").display = False
        self.query_one("#log-search").display = False
        self.watch(self.log_widget, "scroll_y", self._scrolled, init=False)

    @property
    def log_widget(self) -> Log:
        return self.query_one("#log", Log)

    @property
    def following(self) -> bool:
        """True while the view is at the end (new lines scroll into view)."""
        log = self.log_widget
        return log.scroll_y >= log.max_scroll_y - 1

    def add_lines(self, lines: Sequence[str], *, read: int | None = None) -> None:
        """Append ``lines``; keep following the end, or count them as new if scrolled up.

        ``read`` is how many lines these stand for when older ones were already cut upstream.
        """
        if not lines:
            return
        count = max(read or 0, len(lines))
        self.total_lines += count
        follow = self.following
        kept = lines[-self.cap :] if len(lines) > self.cap else lines
        self.log_widget.write_lines(kept, scroll_end=follow)
        if not follow:
            self.new_lines += count
            self._show_marker()
        self.border_subtitle = self._subtitle()

    def clear(self) -> None:
        self.log_widget.clear()
        self.total_lines = self.new_lines = 0
        self._show_marker()
        self.border_subtitle = ""

    def _subtitle(self) -> str:
        kept = self.log_widget.line_count
        if self.total_lines > kept:
            return f"last {kept:,} of {self.total_lines:,} lines"
        return f"{self.total_lines:,} lines"

    def _scrolled(self, _old: float, _new: float) -> None:
        if self.new_lines and self.following:
            self.new_lines = 0
            self._show_marker()

    def _show_marker(self) -> None:
        marker = self.query_one("#log-marker", Static)
        marker.display = self.new_lines > 0
        marker.update(f"▼ {self.new_lines:,} new lines (End to follow)")

    def action_follow(self) -> None:
        self.log_widget.scroll_end(animate=False)
        self.new_lines = 0
        self._show_marker()

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.display = True
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.find(event.value)

    def find(self, text: str) -> int | None:
        """Scroll to the previous line containing ``text`` (case-insensitive); its index, or None."""
        lines = self.log_widget.lines
        needle = text.lower()
        if not needle:
            return None
        if not self._matches or getattr(self, "_needle", None) != needle:
            self._needle = needle
            self._matches = [i for i, line in enumerate(lines) if needle in line.lower()]
            self._match_at = len(self._matches)
        if not self._matches:
            self.border_subtitle = f"no line contains {text!r}"
            return None
        self._match_at = (self._match_at - 1) % len(self._matches)
        line = self._matches[self._match_at]
        self.log_widget.scroll_to(y=max(0, line - 2), animate=False)
        self.border_subtitle = f"match {self._match_at + 1} of {len(self._matches)} for {text!r}: line {line + 1}"
        return line

    def on_key(self, event: events.Key) -> None:
        key = event.key
        search = self.query_one("#log-search", Input)
        if key == "escape" and search.display:
            search.display = False
            self._matches = []
            self.log_widget.focus()
            event.stop()
