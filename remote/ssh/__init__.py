"""SSH to a leased host: a pinned connection, commands, detached jobs, log tails, files, streams.

`SSHRunner` implements `remote.runner.Runner` over one Fabric connection whose host key is
checked by our pin store before any credential is offered. Modules, one idea each:
`connection` (the target, the pin, the one error-translating context), `runner` (the
connection's life, commands, tails and files), `streams` (bulk tar streams through the
system ssh or a channel); detached jobs are shared with the local runner (`remote.jobs`).

Errors are `remote.errors` types: HostUnreachable, HostKeyMismatch, HostKeyUnknown,
AuthFailed, ConnectionLost, RemoteCommandFailed, RemotePathRefused.
"""

from __future__ import annotations

from remote.runner import (
    CommandResult,
    FollowResult,
    JobState,
    JobStatus,
    check_job_name,
    check_remote_path,
    quote_command,
)
from remote.ssh.connection import SSHTarget
from remote.ssh.runner import SSHRunner

__all__ = [
    "CommandResult",
    "FollowResult",
    "JobState",
    "JobStatus",
    "SSHRunner",
    "SSHTarget",
    "check_job_name",
    "check_remote_path",
    "quote_command",
]
