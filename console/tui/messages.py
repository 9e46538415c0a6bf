"""What the console's workers tell the app (they never touch widgets), and the guard for handlers.

Workers run off the UI thread and post these; the app handles them on its own thread. A
message can arrive while the app is shutting down and its panes are gone: handlers wrapped
in `while_on_screen` then drop it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from textual.css.query import NoMatches
from textual.message import Message

from console.tui.feed import FeedUpdate
from console.tui.readings import Reading

if TYPE_CHECKING:  # the engine, the checklist and settings load after the first frame, in workers
    from console.checklist.engine import EngineEvent, RunOutcome
    from console.checklist.spec import ChecklistSpec
    from console.settings import Settings
    from console.state import StateStore

_Handler = TypeVar("_Handler", bound=Callable[..., None])


def while_on_screen(handler: _Handler) -> _Handler:
    """A worker's message can arrive while the app is shutting down and its panes are gone: drop it."""

    @functools.wraps(handler)
    def guarded(self: Any, *args: Any) -> None:
        try:
            handler(self, *args)
        except (NoMatches, IndexError):
            if not self._tearing_down():
                raise

    return guarded  # type: ignore[return-value]


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

    def __init__(
        self, opened: "tuple[Settings, StateStore, str | None] | None", error: BaseException | None = None
    ) -> None:
        super().__init__()
        self.opened = opened
        self.error = error


class DriveFinished(Message):
    """The engine stopped driving: the run's outcome."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__()
        self.outcome = outcome
