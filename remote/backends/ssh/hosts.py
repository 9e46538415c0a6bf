"""The hosts the ``ssh`` backend trains on, and what it needs from whoever leases them.

The backend never launches or pays for a machine itself: the console does (its instances
service), and hands the backend a `HostPool` for the run. The pool is the backend's whole
view of the cloud: the run's current host, a runner for it, how to make a host ready
(code, features, the lease the training guard checks), whether the provider says it is
lost, a replacement, and giving everything back.

Layout on a host (relative to the login directory; `RemoteLayout`)::

    rc/code/                 the `training` package; the training working directory
    rc/code/.rc-lease.json   the lease the training guard checks (training/guard.py)
    rc/data/features/        the run's feature files
    rc/artifacts/            the artifact root training writes (models/, champions/, roster.json)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

from remote.errors import HostUnreachable
from remote.ssh import SSHRunner, check_remote_path

REMOTE_ROOT = "rc"
"""Default root on the host; a host record may name another."""


@dataclass(frozen=True)
class RemoteLayout:
    """Where the run's things live on the host."""

    root: str = REMOTE_ROOT

    @property
    def code(self) -> str:
        return f"{self.root}/code"

    @property
    def features(self) -> str:
        return f"{self.root}/data/features"

    @property
    def artifacts(self) -> str:
        return f"{self.root}/artifacts"

    @property
    def lease(self) -> str:
        return f"{self.root}/code/.rc-lease.json"

    @classmethod
    def at(cls, root: str | None) -> "RemoteLayout":
        """The layout under ``root`` (checked as a plain remote path), or the default one."""
        return cls(check_remote_path(str(root or REMOTE_ROOT)).rstrip("/"))


@dataclass(frozen=True)
class SshHost:
    """One host leased to the run."""

    instance_id: str
    layout: RemoteLayout = RemoteLayout()
    gpu: str = "unknown"
    """What the host trains on, as the sync read it (a tag on the artifacts it produces)."""


class HostLost(HostUnreachable):
    """The host the job ran on is gone (terminated, shutting down, stopped)."""

    def __init__(self, instance_id: str, why: str) -> None:
        super().__init__(
            f"instance {instance_id} was lost during training: {why}; "
            "`console resume` launches a replacement and resumes from the checkpoints"
        )
        self.instance_id = instance_id
        self.why = why


@runtime_checkable
class HostPool(Protocol):
    """The run's hosts, as the console leases them (`console.instances` behind it)."""

    max_replacements: int
    """Replacement hosts the run may launch when its host is lost during training."""

    def acquire(self) -> SshHost:
        """The run's host, launched if it has none (idempotent by the run's tag) and ready."""
        ...

    def current(self) -> SshHost:
        """The run's host as things stand (after any replacement); `HostUnreachable` without one."""
        ...

    def runner(self, host: SshHost, *, sleep: Callable[[float], None]) -> SSHRunner:
        """A runner for ``host`` whose waits go through ``sleep`` (which may raise to end them)."""
        ...

    def ready(self, host: SshHost, runner: SSHRunner) -> SshHost:
        """Make sure ``host`` has the code, the features and a lease for this run (only what
        it lacks); the host as it now is."""
        ...

    def lost_reason(self, host: SshHost) -> str | None:
        """Why the provider says ``host`` can no longer train; None while it is live (or unknown)."""
        ...

    def can_replace(self) -> bool:
        """True when a lost host can be replaced (the provider rents machines)."""
        ...

    def watches_spot_notices(self) -> bool:
        """True when a host may get a spot interruption notice worth looking for."""
        ...

    def replace(self, host: SshHost, why: str) -> SshHost:
        """End the lost ``host`` for good and get the run its next one (not yet ready)."""
        ...

    def replacements(self) -> int:
        """How many times the run's host was replaced so far (across attempts and resumes)."""
        ...

    def release(self) -> tuple[str, ...]:
        """Give back every host of the run (terminate and confirm); the ids given back."""
        ...
