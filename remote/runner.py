"""The runner protocol: commands, detached jobs, log tails and files on one host.

Two runners share it: `remote.ssh.SSHRunner` (a leased host over SSH, host key pinned) and
`remote.local.LocalRunner` (a directory on this machine, through invoke). The code above
them -- delta sync (`remote.sync`), host readings (`remote.metrics`), the ``ssh`` backend,
the checkpoint shelf -- runs unchanged on either, so it is exercised for real without a
cloud. Detached jobs are one implementation for both (`remote.jobs`).

Every command built here is quoted (`quote_command`); every remote path is checked
(`check_remote_path`) before it reaches a shell or a filesystem.
"""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from remote.errors import RemotePathRefused

_REMOTE_PATH = re.compile(r"^/?[A-Za-z0-9._+@=,-]+(/[A-Za-z0-9._+@=,-]+)*/?$")
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_remote_path(path: str) -> str:
    """Return ``path`` if it is a plain remote path, else raise RemotePathRefused.

    Plain means letters, digits and ``. _ + @ = , -`` between slashes: no spaces, no shell
    metacharacters, no ``~``, no ``..`` component. Commands still quote it; this check is
    the second lock, and it keeps ``..`` from walking out of a sync root.
    """
    if not isinstance(path, str) or not _REMOTE_PATH.match(path) or ".." in path.split("/"):
        raise RemotePathRefused(
            f"remote path {path!r} is refused: use letters, digits and . _ + @ = , - between slashes, no '..'"
        )
    return path


def check_job_name(name: str) -> str:
    """Return ``name`` if it is a plain job name (it becomes a directory on the host)."""
    if not isinstance(name, str) or not _JOB_NAME.match(name):
        raise RemotePathRefused(f"job name {name!r} is refused: use letters, digits and . _ - (max 64)")
    return name


def quote_command(command: str | Sequence[str]) -> str:
    """A shell command line: a sequence is quoted word by word; a string is taken as written.

    Pass argv lists for anything that carries a value from outside; a string is for
    fixed scripts assembled from already-quoted parts.
    """
    if isinstance(command, str):
        return command
    return shlex.join(list(command))


@dataclass(frozen=True)
class CommandResult:
    """What a finished remote command left behind."""

    command: str
    exit_status: int
    output: str
    """Combined stdout and stderr (the last 4 MiB at most)."""
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class JobState(enum.Enum):
    """Where a detached job stands, as read from its files on the host."""

    ABSENT = "absent"
    """No job of that name was ever started on this host."""
    RUNNING = "running"
    """Its process is alive."""
    EXITED = "exited"
    """It finished and recorded its exit code."""
    DIED = "died"
    """Its process is gone without an exit code (killed, cancelled, or the host rebooted)."""


@dataclass(frozen=True)
class JobStatus:
    """One reading of a detached job."""

    name: str
    state: JobState
    exit_code: int | None
    pid: int | None
    log_path: str
    log_size: int

    @property
    def finished(self) -> bool:
        return self.state in (JobState.EXITED, JobState.DIED)


@dataclass
class FollowResult:
    """How a followed job ended and how far its log was read."""

    status: JobStatus
    offset: int
    reconnects: int = 0


class RunnerTarget(Protocol):
    """What a runner says about where it runs."""

    @property
    def instance_id(self) -> str: ...

    @property
    def where(self) -> str: ...


@runtime_checkable
class Runner(Protocol):
    """Commands, detached jobs, tails and files on one host (see the module docstring)."""

    @property
    def target(self) -> RunnerTarget: ...

    @property
    def connected(self) -> bool: ...

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout_s: float | None = None,
        on_output: Callable[[str], None] | None = None,
        check: bool = True,
        stdin: bytes | None = None,
    ) -> CommandResult: ...

    def run_detached(
        self, command: str | Sequence[str], job_name: str, *, cwd: str | None = None, replace: bool = False
    ) -> JobStatus: ...

    def job_status(self, job_name: str) -> JobStatus: ...

    def cancel_job(self, job_name: str, signal: str = "TERM") -> JobStatus: ...

    def follow_job(
        self,
        job_name: str,
        on_line: Callable[[str], None],
        *,
        offset: int = 0,
        poll_s: float = 0.05,
        status_every_s: float = 1.0,
        max_reconnect_wait_s: float = 120.0,
        on_reconnect: Callable[[int], None] | None = None,
    ) -> FollowResult: ...

    def tail(
        self, path: str, offset: int = 0, *, max_bytes: int = 1 << 20, whole_lines: bool = True
    ) -> tuple[bytes, int]: ...

    def put(self, local: Path | str, remote: str) -> None: ...

    def get(self, remote: str, local: Path | str) -> None: ...

    def read_text(self, remote: str) -> str | None: ...

    def write_text(self, remote: str, text: str, *, mode: int = 0o644) -> None: ...

    def upload_stream(self, command: str, *, use_openssh: bool | None = None) -> AbstractContextManager[BinaryIO]: ...

    def download_stream(self, command: str, *, use_openssh: bool | None = None) -> AbstractContextManager[BinaryIO]: ...

    def close(self) -> None: ...
