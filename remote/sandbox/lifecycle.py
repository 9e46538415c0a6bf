"""Start, stop and inspect the sandbox daemon: what `console sandbox up|down|status` call.

`ensure_up` is idempotent and cheap when the daemon already runs (a lock, a file read and
one HTTP round trip); otherwise it starts ``python -m remote.sandbox.daemon`` detached
(its own session, output to ``daemon.log``) and waits until it publishes its endpoints.
A lock file serialises concurrent callers, so two processes never start two daemons.
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

from remote.processes import pid_alive
from remote.errors import SandboxError, SandboxNotRunning
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


def ensure_up(state_dir: Path, *, timeout_s: float = 60.0, market_seed: int = 7,
              market_mode: str = "structured") -> SandboxEndpoints:
    """The running sandbox's endpoints, starting the daemon first if it is not running."""
    paths = SandboxPaths.under(state_dir)
    with _locked(paths):
        running = _running(state_dir)
        if running is not None:
            return running
        _remove_stale(paths)
        pid = _spawn(paths, state_dir, market_seed, market_mode)
        return _wait_published(paths, state_dir, pid, timeout_s)


def down(state_dir: Path, *, timeout_s: float = 20.0) -> bool:
    """Stop the daemon (terminating every sandbox instance with it); False if it was not running."""
    paths = SandboxPaths.under(state_dir)
    with _locked(paths):
        pid = _read_pid(paths)
        if pid is None or not pid_alive(pid):
            _remove_stale(paths)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid):
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
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


def _spawn(paths: SandboxPaths, state_dir: Path, seed: int, mode: str) -> int:
    # A minimal environment: the daemon needs no credentials or tokens, so it holds none.
    env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    with open(paths.log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "remote.sandbox.daemon", "--state-dir", str(state_dir),
             "--market-seed", str(seed), "--market-mode", mode],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=str(paths.root), start_new_session=True, close_fds=True)
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
            raise SandboxError(f"the sandbox daemon exited at start: {_last_line(paths.log_file)} "
                               f"(see {paths.log_file})")
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
