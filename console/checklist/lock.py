"""One process drives a run at a time: an exclusive OS file lock in the run's directory.

The kernel releases the lock when its holder dies (``kill -9`` included), so a run is never
left locked by a dead console; the lock file names the holder's pid for the message.

Choosing a run (resume the unfinished one, or create one) happens under `StartLock`, a
second, state-directory-wide lock held only for that decision and for taking the chosen
run's `RunLock`: two consoles started at the same instant cannot both find "nothing to
resume" and create two runs; the second one finds the first's run and is refused by its
`RunLock`.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

from console.errors import RunLocked, StateError

START_LOCK_WAIT_S = 30.0


class RunLock:
    """An exclusive, non-blocking lock on one run; the kernel releases it if we die."""

    def __init__(self, directory: Path, run_id: str) -> None:
        self.path = directory / "lock"
        self.run_id = run_id
        self._fh: Any = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fh is not None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunLocked(
                f"run {self.run_id} is already being driven by pid {holder}",
                hint="wait for it, or follow it with `console status` / `console tui --attach`",
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @staticmethod
    def is_held(directory: Path) -> bool:
        path = directory / "lock"
        if not path.exists():
            return False
        with open(path) as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return False


class StartLock:
    """A short exclusive lock over the whole state directory while a run is chosen.

    Blocking (others wait their turn, a few milliseconds each), bounded by ``wait_s``.
    """

    def __init__(self, state_dir: Path, wait_s: float = START_LOCK_WAIT_S) -> None:
        self.path = Path(state_dir).expanduser() / "runs" / ".start.lock"
        self.wait_s = wait_s
        self._fh: Any = None

    def __enter__(self) -> "StartLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    fh.close()
                    raise StateError(
                        f"another console held {self.path} for over {self.wait_s:.0f}s while choosing a run",
                        hint="try again; if it persists, see which console is stuck with `console runs`",
                    ) from None
                time.sleep(0.01)
        self._fh = fh
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
