"""One pinned SSH connection, on Fabric's `Connection`, and the one place its errors become ours.

Fabric's `Connection` wraps a paramiko `SSHClient`; paramiko checks the server's host key
*after* the key exchange and *before* any credential is offered. Nothing is loaded for it
to check against (no ``~/.ssh/config``, no ``known_hosts``, no agent, no key search), so
every key reaches `PinningPolicy`, which asks the per-instance pin store
(`remote.hostkeys.HostKeyStore`): a pinned key must match, an unpinned host is learned
only from a trusted publication, anything else is refused (HostKeyMismatch,
HostKeyUnknown) and the connection is closed with no credential sent.

`translated` is the single error-translating context every operation on an open
connection runs in: paramiko's, the socket's and invoke's errors come out as
`remote.errors` types (an error that took the link down is ConnectionLost, which the
runner recovers from by reconnecting; an OS error on a live link is the operation's
failure, RemoteCommandFailed).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection

from remote.errors import (
    AuthFailed,
    ConnectionLost,
    HostKeyMismatch,
    HostKeyUnknown,
    HostUnreachable,
    RemoteCommandFailed,
    RemoteError,
)
from remote.hostkeys import HostKey, HostKeyStore


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to reach one host, and how its host key is trusted."""

    instance_id: str
    """The provider's id for the host; names the pin (and the known-hosts file)."""
    host: str
    port: int
    user: str
    key_path: Path
    """The private key to authenticate with (never the operator's ~/.ssh)."""
    known_hosts_dir: Path
    """Directory of per-instance known-hosts files (the console's state dir)."""
    publication: str | None = None
    """Trusted text that lists the host's keys (EC2 console output, sandbox endpoint file);
    needed only for the first connection, before a key is pinned."""
    connect_timeout_s: float = 10.0
    keepalive_s: int = 15
    jobs_dir: str = ".rc-jobs"
    """Where detached jobs keep their files: relative to the login directory, or absolute."""

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


class PinningPolicy(paramiko.MissingHostKeyPolicy):
    """Accept exactly the pinned key (or one a trusted publication lists, pinned on the way)."""

    def __init__(self, target: SSHTarget, pins: HostKeyStore) -> None:
        self.target = target
        self.pins = pins
        self.accepted: HostKey | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        offered = HostKey(key.get_name(), key.get_base64())
        # Before any credential leaves this machine: the host must prove it is pinned.
        self.pins.verify(self.target.instance_id, offered, self.target.where, self.target.publication)
        self.accepted = offered


def open_connection(target: SSHTarget, pins: HostKeyStore) -> tuple[Connection, HostKey]:
    """A connected Fabric `Connection` to ``target`` and the host key it was checked against.

    Raises HostUnreachable, HostKeyMismatch, HostKeyUnknown or AuthFailed.
    """
    try:
        pkey = paramiko.PKey.from_path(str(target.key_path))
    except (OSError, paramiko.SSHException) as exc:
        raise AuthFailed(
            f"cannot read private key {target.key_path}: {exc}; check the path and that it has no passphrase"
        ) from exc
    # lazy: no invoke/fabric config files; an explicit SSHConfig: no ~/.ssh/config.
    config = Config(lazy=True, ssh_config=paramiko.SSHConfig(), overrides={"load_ssh_configs": False})
    connection = Connection(
        target.host,
        user=target.user,
        port=target.port,
        config=config,
        forward_agent=False,
        connect_timeout=max(1, int(target.connect_timeout_s)),
        connect_kwargs={
            "pkey": pkey,
            "allow_agent": False,
            "look_for_keys": False,
            "banner_timeout": target.connect_timeout_s,
            "auth_timeout": target.connect_timeout_s,
        },
    )
    policy = PinningPolicy(target, pins)
    connection.client.set_missing_host_key_policy(policy)
    try:
        connection.open()
    except (HostKeyMismatch, HostKeyUnknown):
        connection.close()
        raise
    except paramiko.AuthenticationException as exc:
        connection.close()
        raise AuthFailed(
            f"{target.where} refused key {target.key_path} for user {target.user!r}; "
            "check the user name and that the instance was launched with this key"
        ) from exc
    except (paramiko.SSHException, EOFError) as exc:
        connection.close()
        raise HostUnreachable(
            f"SSH handshake with {target.where} failed: {exc or type(exc).__name__}; is an SSH server listening there?"
        ) from exc
    except OSError as exc:  # refused, unreachable, timed out: the TCP connection never came up
        connection.close()
        raise HostUnreachable(
            f"cannot reach {target.where} for {target.instance_id}: {exc.strerror or exc}; "
            "check the host is up and its SSH port is open to you"
        ) from exc
    assert connection.transport is not None and policy.accepted is not None
    connection.transport.set_keepalive(target.keepalive_s)
    return connection, policy.accepted


@contextlib.contextmanager
def translated(
    where: str, doing: str, *, connected: Callable[[], bool], on_lost: Callable[[], None], command: str = ""
) -> Iterator[None]:
    """Run an operation on an open connection; its errors come out as ours.

    An error that took the link down becomes ConnectionLost (``on_lost`` drops the dead
    connection first); an OS error while the link stays up (an SFTP status: permission, a
    directory) is the operation's failure, RemoteCommandFailed. `FileNotFoundError` passes
    through for callers that read "missing" as an answer.
    """
    try:
        yield
    except (RemoteError, FileNotFoundError):
        raise
    except (paramiko.SSHException, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, socket.timeout) and connected():
            raise RemoteCommandFailed(f"cannot {doing} on {where}: {exc}", command=command or doing) from exc
        on_lost()
        raise ConnectionLost(
            f"connection to {where} lost while {doing}: {exc or type(exc).__name__}; it will be retried on reconnect"
        ) from exc
