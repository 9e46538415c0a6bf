"""The watchdog as a process: one per state directory, started, stopped and asked how it is.

``<state_dir>/watchdog/`` holds ``watchdog.lock`` (held with fcntl while it runs),
``watchdog.pid``, ``status.json`` (after every pass), ``watchdog.log``, ``watchdog.out``
and ``notify.json``. `start_background` runs ``console watchdog run`` detached;
`ensure_watchdog_running` does so unless one runs (safe to call after every launch).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.errors import ConsoleError, UsageError
from console.redact import RedactingFilter
from console.resources import Resources
from console.state import StateStore
from console.watchdog.passes import PassReport, Watchdog

if TYPE_CHECKING:  # pragma: no cover
    from console.settings import Settings

log = logging.getLogger("console.watchdog")
WATCHDOG_DIR = "watchdog"


def watchdog_dir(settings: "Settings") -> Path:
    return Path(settings.state_dir).expanduser() / WATCHDOG_DIR


class WatchdogLock:
    """The per-state-dir lock (fcntl) a running watchdog holds; the pid file names the holder."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.lock_path = self.directory / "watchdog.lock"
        self.pid_path = self.directory / "watchdog.pid"
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        self._fd = fd
        _write_text(self.pid_path, f"{os.getpid()}\n")
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                if read_pid(self.directory) == os.getpid():
                    self.pid_path.unlink()
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WatchdogLock":
        if not self.acquire():
            raise WatchdogRunning(
                f"a watchdog is already running for {self.directory.parent} (pid {read_pid(self.directory)})",
                hint="see `console watchdog status`",
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @staticmethod
    def is_held(directory: Path) -> bool:
        lock_path = Path(directory) / "watchdog.lock"
        if not lock_path.exists():
            return False
        fd = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)


class WatchdogRunning(UsageError):
    """A watchdog already runs for this state directory."""


class WatchdogNotRunning(ConsoleError):
    """No watchdog runs for this state directory."""


def read_pid(directory: Path) -> int | None:
    try:
        return int((Path(directory) / "watchdog.pid").read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class WatchdogStatus:
    """What `console watchdog status` shows."""

    running: bool
    pid: int | None
    last_pass: dict[str, Any] | None
    directory: Path


def watchdog_status(settings: "Settings") -> WatchdogStatus:
    directory = watchdog_dir(settings)
    running = WatchdogLock.is_held(directory)
    last = None
    with contextlib.suppress(OSError, ValueError):
        last = json.loads((directory / "status.json").read_text())
    return WatchdogStatus(running, read_pid(directory) if running else None, last, directory)


def _setup_logging(directory: Path, *, foreground: bool) -> None:
    handler: logging.Handler = logging.FileHandler(directory / "watchdog.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    if foreground:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        stream.addFilter(RedactingFilter())
        root.addHandler(stream)
    root.setLevel(logging.INFO)
    # boto and urllib3 chatter at INFO would fill the log every pass.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_foreground(
    resources: Resources, store: StateStore, *, watchdog: Watchdog | None = None, stop: threading.Event | None = None
) -> None:
    """`console watchdog run`: hold the lock and pass every interval until SIGTERM/SIGINT."""
    settings = resources.settings
    directory = watchdog_dir(settings)
    with WatchdogLock(directory):
        _setup_logging(directory, foreground=sys.stderr.isatty())
        dog = watchdog or Watchdog(resources, store)
        stop = stop or threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        log.info("watchdog %d watching %s every %gs", os.getpid(), settings.state_dir, settings.watchdog.interval_s)
        dog.serve(stop)
        log.info("watchdog %d stopped", os.getpid())


def run_once(resources: Resources, store: StateStore, *, watchdog: Watchdog | None = None) -> PassReport | None:
    """`console watchdog once`: one pass, unless a running watchdog already covers this state dir (None)."""
    lock = WatchdogLock(watchdog_dir(resources.settings))
    if not lock.acquire():
        return None
    try:
        if watchdog is None:
            _setup_logging(lock.directory, foreground=False)
        return (watchdog or Watchdog(resources, store)).run_pass()
    finally:
        lock.release()


def start_background(
    settings: "Settings", *, config_path: str | os.PathLike[str] | None = None, wait_s: float = 10.0
) -> int:
    """Start `console watchdog run` detached for this state dir; its pid. Refuses if one runs."""
    directory = watchdog_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    if WatchdogLock.is_held(directory):
        raise WatchdogRunning(
            f"a watchdog is already running (pid {read_pid(directory)})", hint="see `console watchdog status`"
        )
    argv = [
        sys.executable,
        "-m",
        "console",
        "watchdog",
        "run",
        "--state-dir",
        str(Path(settings.state_dir).expanduser()),
        "--profile",
        settings.profile,
    ]
    if config_path:
        argv += ["--config", str(config_path)]
    # The child reads secrets from the same environment; nothing secret goes on its command line.
    with open(directory / "watchdog.out", "ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if WatchdogLock.is_held(directory) and read_pid(directory) == proc.pid:
            return proc.pid
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None and WatchdogLock.is_held(directory):
        return proc.pid
    if proc.poll() is not None and WatchdogLock.is_held(directory):
        return read_pid(directory) or proc.pid  # lost a race with another starter: that one runs
    raise ConsoleError(f"the watchdog did not start (see {directory / 'watchdog.out'})")


def stop_background(settings: "Settings", *, timeout_s: float = 15.0) -> int:
    """Stop the running watchdog (SIGTERM, then wait); its pid. `WatchdogNotRunning` if none."""
    directory = watchdog_dir(settings)
    pid = read_pid(directory)
    if not WatchdogLock.is_held(directory) or pid is None:
        raise WatchdogNotRunning(f"no watchdog is running for {settings.state_dir}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not WatchdogLock.is_held(directory):
            return pid
        time.sleep(0.05)
    raise ConsoleError(f"watchdog {pid} did not stop within {timeout_s:g}s", hint=f"kill {pid}")


def ensure_watchdog_running(settings: "Settings", *, config_path: str | os.PathLike[str] | None = None) -> int:
    """Start the watchdog for this state dir unless one runs; its pid. Safe to call after every launch."""
    directory = watchdog_dir(settings)
    if WatchdogLock.is_held(directory):
        return read_pid(directory) or 0
    try:
        return start_background(settings, config_path=config_path)
    except WatchdogRunning:
        return read_pid(directory) or 0


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
