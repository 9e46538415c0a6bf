"""Start, stop and inspect the sandbox daemon: what `console sandbox up|down|status` call.

`ensure_up` is idempotent and cheap when the daemon already runs (a lock, a file read and
one HTTP round trip); otherwise it starts ``python -m remote.sandbox.daemon`` detached
(its own session, output to ``daemon.log``) and waits until it publishes its endpoints.
A lock file serialises concurrent callers, so two processes never start two daemons.

A daemon that is alive but does not answer (hung, or stopped with SIGSTOP) is not waited
on forever: `ensure_up` gives it ``unhealthy_after_s`` to answer, then stops it and starts
a fresh one. `down` asks with SIGTERM and escalates to SIGKILL after ``grace_s``; after a
SIGKILL it ends the processes the daemon's hosts left behind. A pid is only ever signalled
when its command line is this state directory's daemon (a stale pid file may name a
process that has nothing to do with us).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from remote.errors import SandboxError, SandboxNotRunning
from remote.processes import pid_alive
from remote.sandbox.endpoints import SandboxEndpoints, SandboxPaths

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_PASSED_ENV = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "PYTHONPATH", "VIRTUAL_ENV"})


@dataclass(frozen=True)
class SandboxStatus:
    """What `console sandbox status` shows."""

    running: bool
    pid: int | None
    endpoints: SandboxEndpoints | None
    instances: tuple[str, ...]
    """Ids of live sandbox instances (those with an SSH endpoint)."""
    log_file: Path


STOP_GRACE_S = 15.0
"""How long `down` waits after SIGTERM before SIGKILL (the daemon's own deadline is 10 s)."""
UNHEALTHY_AFTER_S = 15.0
"""How long a live daemon may fail to answer before `ensure_up` replaces it (a loaded
machine can make a healthy one slow; replacing it ends every sandbox instance)."""


def ensure_up(
    state_dir: Path,
    *,
    timeout_s: float = 60.0,
    market_seed: int = 7,
    market_mode: str = "structured",
    batch_running: int = 2,
    unhealthy_after_s: float = UNHEALTHY_AFTER_S,
    grace_s: float = STOP_GRACE_S,
) -> SandboxEndpoints:
    """The running sandbox's endpoints, starting the daemon first if it is not running.

    ``batch_running`` is how many Batch children a daemon started here runs at once; a running
    daemon keeps the settings it was started with (the caller compares them).

    A daemon that is alive but has not answered within ``unhealthy_after_s`` is stopped
    (SIGTERM, then SIGKILL after ``grace_s``) and replaced.
    """
    paths = SandboxPaths.under(state_dir)
    with _locked(paths):
        running = _running(state_dir)
        if running is not None:
            return running
        pid = _daemon_pid(paths, state_dir)
        if pid is not None:
            running = _await_healthy(state_dir, pid, unhealthy_after_s)
            if running is not None:
                return running
            _stop(paths, pid, grace_s)
        _remove_stale(paths)
        pid = _spawn(paths, state_dir, market_seed, market_mode, batch_running)
        return _wait_published(paths, state_dir, pid, timeout_s)


def down(state_dir: Path, *, grace_s: float = STOP_GRACE_S) -> bool:
    """Stop the daemon (terminating every sandbox instance with it); False if it was not running.

    SIGTERM first; SIGKILL when it has not exited after ``grace_s`` (hung, or stopped).
    """
    paths = SandboxPaths.under(state_dir)
    with _locked(paths):
        pid = _daemon_pid(paths, state_dir)
        if pid is None:
            _remove_stale(paths)
            return False
        _stop(paths, pid, grace_s)
        _remove_stale(paths)
        return True


def status(state_dir: Path) -> SandboxStatus:
    """Whether the daemon runs and answers, its endpoints and live instances."""
    paths = SandboxPaths.under(state_dir)
    running = _running(state_dir)
    if running is None:
        return SandboxStatus(False, None, None, (), paths.log_file)
    return SandboxStatus(True, running.pid, running, tuple(sorted(running.ssh_endpoints())), paths.log_file)


# --- internals ----------------------------------------------------------------------------


@contextmanager
def _locked(paths: SandboxPaths) -> Iterator[None]:
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        fh = open(paths.lock_file, "a+")
    except OSError as exc:
        raise SandboxError(f"cannot use the sandbox directory {paths.root}: {exc.strerror}") from exc
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _running(state_dir: Path) -> SandboxEndpoints | None:
    try:
        endpoints = SandboxEndpoints.read(state_dir)
    except SandboxError:
        return None
    if not pid_alive(endpoints.pid) or not endpoints.healthy():
        return None
    return endpoints


def _daemon_pid(paths: SandboxPaths, state_dir: Path) -> int | None:
    """The pid in the pid file when that process is alive and is this state dir's daemon."""
    pid = _read_pid(paths)
    if pid is None or not pid_alive(pid):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode(errors="replace") for a in fh.read().split(b"\0")]
    except OSError:
        return None
    try:
        named = argv[argv.index("--state-dir") + 1] if "remote.sandbox.daemon" in argv else None
        same = named is not None and Path(named).resolve() == Path(state_dir).resolve()
    except (ValueError, IndexError, OSError):
        same = False
    return pid if same else None  # a reused pid belongs to something else: never signal it


def _await_healthy(state_dir: Path, pid: int, wait_s: float) -> SandboxEndpoints | None:
    """The endpoints once the daemon ``pid`` answers; None if it has not within ``wait_s`` (or died)."""
    deadline = time.monotonic() + wait_s
    while True:
        running = _running(state_dir)
        if running is not None and running.pid == pid:
            return running
        if not pid_alive(pid) or time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def _stop(paths: SandboxPaths, pid: int, grace_s: float) -> None:
    """SIGTERM ``pid``; SIGKILL it after ``grace_s``; wait until it is gone. After a SIGKILL the
    daemon could not end its hosts' processes, so they are ended here."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _wait_gone(pid, grace_s):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if not _wait_gone(pid, 10.0):
        raise SandboxError(f"the sandbox daemon (pid {pid}) survived SIGKILL; check the machine")
    from remote.sandbox.hosts import kill_processes_under

    kill_processes_under(paths.root / "instances")


def _wait_gone(pid: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _spawn(paths: SandboxPaths, state_dir: Path, seed: int, mode: str, batch_running: int) -> int:
    # A minimal environment: the daemon needs no credentials or tokens, so it holds none.
    # Its settings therefore travel as flags, never as environment variables.
    env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    with open(paths.log_file, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "remote.sandbox.daemon",
                "--state-dir",
                str(Path(state_dir).resolve()),
                "--market-seed",
                str(seed),
                "--market-mode",
                mode,
                "--batch-running",
                str(int(batch_running)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(paths.root),
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def _wait_published(paths: SandboxPaths, state_dir: Path, pid: int, timeout_s: float) -> SandboxEndpoints:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            endpoints = SandboxEndpoints.read(state_dir)
            if endpoints.pid == pid and endpoints.healthy():
                return endpoints
        except SandboxError:
            pass
        if not pid_alive(pid):
            raise SandboxError(
                f"the sandbox daemon exited at start: {_last_line(paths.log_file)} (see {paths.log_file})"
            )
        time.sleep(0.05)
    raise SandboxError(f"the sandbox daemon did not come up in {timeout_s:.0f}s (see {paths.log_file})")


def _read_pid(paths: SandboxPaths) -> int | None:
    try:
        return int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _remove_stale(paths: SandboxPaths) -> None:
    for path in (paths.endpoints_file, paths.pid_file):
        path.unlink(missing_ok=True)


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def require_up(state_dir: Path) -> SandboxEndpoints:
    """The running sandbox's endpoints, or `SandboxNotRunning` (for commands that must not start it)."""
    running = _running(state_dir)
    if running is None:
        raise SandboxNotRunning("the sandbox is not running; run `console sandbox up`")
    return running
