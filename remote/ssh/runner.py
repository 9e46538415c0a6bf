"""The SSH runner: commands, detached jobs, log tails and files on one pinned host.

The connection is Fabric's, pinned before any credential is offered (`connection`); every
operation on it runs inside the one error-translating context (`SSHRunner._io`, over
`connection.translated`). Detached jobs are `remote.jobs.DetachedJobs`, bulk streams
`streams.SSHStreams`; this class holds the connection and the plain commands and files.
Every command we build is quoted; every remote path is checked first.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko

from remote.errors import ConnectionLost, HostUnreachable, RemoteCommandFailed, RemoteError
from remote.hostkeys import HostKey, HostKeyStore, check_instance_id
from remote.jobs import DetachedJobs
from remote.runner import CommandResult, check_remote_path, quote_command
from remote.ssh.connection import SSHTarget, open_connection, translated
from remote.ssh.streams import SSHStreams, _output_tail

if TYPE_CHECKING:  # pragma: no cover
    from fabric import Connection

_TAIL_LINES = 30


class SSHRunner(DetachedJobs, SSHStreams):
    """Commands, detached jobs, tails and transfers on one host, over one pinned connection.

    Use as a context manager or call `connect` / `close`. Methods connect lazily. Any
    connection failure mid-operation raises ConnectionLost; `reconnect` (or `follow_job`,
    which does it itself) brings the connection back with backoff.
    """

    def __init__(self, target: SSHTarget, *, sleep: Callable[[float], None] = time.sleep) -> None:
        check_instance_id(target.instance_id)
        check_remote_path(target.jobs_dir)
        self.target = target
        self.jobs_dir = target.jobs_dir
        self.host_keys = HostKeyStore(target.known_hosts_dir)
        self._sleep = sleep
        self._connection: Connection | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._home: str | None = None
        self._host_key: HostKey | None = None
        self._tail_handles: dict[str, paramiko.SFTPFile] = {}
        self.connections = 0
        """How many times this runner has connected (more than 1 means it reconnected)."""
        self._lock = threading.RLock()

    # --- connection -------------------------------------------------------------

    def __enter__(self) -> SSHRunner:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _transport(self) -> paramiko.Transport | None:
        return self._connection.transport if self._connection is not None else None

    @property
    def connected(self) -> bool:
        transport = self._transport
        return transport is not None and transport.is_active()

    def connect(self) -> None:
        """Open the connection: TCP, handshake, host-key check, public-key auth, keepalives.

        Raises HostUnreachable, HostKeyMismatch, HostKeyUnknown or AuthFailed.
        """
        with self._lock:
            if self.connected:
                return
            self._drop()
            self._connection, self._host_key = open_connection(self.target, self.host_keys)
            self.connections += 1

    def reconnect(self, max_wait_s: float = 60.0) -> int:
        """Drop the connection and connect again, backing off 0.25 s doubling to 8 s.

        Returns the number of attempts it took. A host-key or auth refusal is raised at
        once (waiting will not fix it); HostUnreachable is raised after ``max_wait_s``.
        """
        deadline = time.monotonic() + max_wait_s
        delay, attempt = 0.25, 0
        with self._lock:
            self._drop()
            while True:
                attempt += 1
                try:
                    self.connect()
                    return attempt
                except HostUnreachable:
                    if time.monotonic() + delay > deadline:
                        raise
                self._sleep(delay)
                delay = min(delay * 2, 8.0)

    def close(self) -> None:
        """Close the connection (detached jobs keep running on the host)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        # Closing on a dead link raises too; the loss is already known.
        for handle in self._tail_handles.values():
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                handle.close()
        self._tail_handles.clear()
        if self._sftp is not None:
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                self._sftp.close()
        if self._connection is not None:
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                self._connection.close()
        self._sftp = None
        self._connection = None

    def _io(self, doing: str) -> contextlib.AbstractContextManager[None]:
        """The one error-translating context of every operation on the open connection."""
        return translated(self.target.where, doing, connected=lambda: self.connected, on_lost=self._drop_if_dead)

    def _drop_if_dead(self) -> None:
        with self._lock:
            # Another thread may already have reconnected: keep a live connection.
            if not self.connected:
                self._drop()

    def _lost(self, exc: BaseException, doing: str) -> ConnectionLost:
        self._drop_if_dead()
        return ConnectionLost(
            f"connection to {self.target.where} lost while {doing}: {exc or type(exc).__name__}; "
            f"it will be retried on reconnect"
        )

    def _require(self) -> paramiko.Transport:
        self.connect()
        transport = self._transport
        assert transport is not None
        return transport

    @property
    def host_key(self) -> HostKey | None:
        """The pinned key the current connection was checked against."""
        return self._host_key

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """The connection's SFTP session (opened on first use)."""
        with self._lock:
            if self._sftp is None:
                transport = self._require()
                with self._io("opening SFTP"):
                    self._sftp = paramiko.SFTPClient.from_transport(transport)
            assert self._sftp is not None
            return self._sftp

    @property
    def home(self) -> str:
        """The login directory on the host (relative remote paths start here)."""
        if self._home is None:
            with self._io("finding the login directory"):
                self._home = self.sftp.normalize(".")
        return self._home

    # --- commands ---------------------------------------------------------------

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout_s: float | None = None,
        on_output: Callable[[str], None] | None = None,
        check: bool = True,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run a command to completion, streaming its combined output line by line.

        ``on_output`` gets each line (without its newline) as it arrives. With ``check``
        a non-zero exit raises RemoteCommandFailed carrying the command, exit status and
        output tail. Past ``timeout_s`` the channel is closed and RemoteCommandFailed
        raised (the remote process may go on; use `run_detached` for long work).
        """
        cmd = quote_command(command)
        transport = self._require()
        started = time.monotonic()
        deadline = started + timeout_s if timeout_s else None
        tail: deque[str] = deque(maxlen=_TAIL_LINES)
        kept: deque[str] = deque()
        kept_chars = 0
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""

        def emit(text: str, final: bool = False) -> None:
            nonlocal pending, kept_chars
            pending += text
            *lines, pending = pending.split("\n")
            if final and pending:
                lines.append(pending)
                pending = ""
            for line in lines:
                tail.append(line)
                kept.append(line)
                kept_chars += len(line) + 1
                while kept_chars > 4 << 20 and kept:
                    kept_chars -= len(kept.popleft()) + 1
                if on_output is not None:
                    on_output(line)

        try:
            chan = transport.open_session(timeout=self.target.connect_timeout_s)
            chan.set_combine_stderr(True)
            chan.exec_command(cmd)
            if stdin is not None:
                chan.sendall(stdin)
            chan.shutdown_write()
            chan.settimeout(0.2)
            while True:
                try:
                    data = chan.recv(65536)
                except TimeoutError:
                    data = None
                if data:
                    emit(decoder.decode(data))
                elif data == b"":
                    break
                if deadline is not None and time.monotonic() > deadline:
                    chan.close()
                    raise RemoteCommandFailed(
                        f"command timed out after {timeout_s:g} s on {self.target.where}: {cmd[:120]}",
                        command=cmd,
                        exit_status=None,
                        output_tail=_output_tail(tail),
                    )
                if not transport.is_active():
                    raise EOFError("transport closed")
            emit(decoder.decode(b"", final=True), final=True)
            if not chan.exit_status_ready() and not transport.is_active():
                raise EOFError("transport closed before the exit status arrived")
            status = chan.recv_exit_status()
        except (paramiko.SSHException, EOFError, OSError) as exc:  # the link itself failed mid-command
            raise self._lost(exc, f"running {cmd[:80]!r}") from exc
        if status == -1 and not transport.is_active():
            raise self._lost(EOFError("no exit status"), f"running {cmd[:80]!r}")
        result = CommandResult(cmd, status, "\n".join(kept), time.monotonic() - started)
        if check and status != 0:
            raise RemoteCommandFailed(
                f"remote command exited {status} on {self.target.where}: {cmd[:120]}"
                + (f" -- {_output_tail(tail)}" if tail else ""),
                command=cmd,
                exit_status=status,
                output_tail="\n".join(tail),
            )
        return result

    # --- tails and files ------------------------------------------------------------

    def tail(
        self, path: str, offset: int = 0, *, max_bytes: int = 1 << 20, whole_lines: bool = True
    ) -> tuple[bytes, int]:
        """Bytes of a remote file from ``offset`` and the offset to ask for next time.

        With ``whole_lines`` only complete lines are returned, so a reader that resumes
        from the returned offset (on this or a new connection) never splits, loses or
        repeats a line. A file that does not exist yet reads as empty.
        """
        check_remote_path(path)
        try:
            with self._io(f"read {path}"):
                handle = self._tail_handles.get(path)
                if handle is None:
                    handle = self.sftp.open(path, "rb")
                    self._tail_handles[path] = handle
                handle.seek(offset)
                data = handle.read(max_bytes)
        except FileNotFoundError:
            return b"", offset
        if whole_lines:
            cut = data.rfind(b"\n") + 1
            # A line longer than max_bytes would never complete: hand it over in pieces.
            if cut or len(data) < max_bytes:
                data = data[:cut]
        return data, offset + len(data)

    def exists(self, path: str) -> bool:
        """True when ``path`` exists on the host (an unreadable one counts as absent)."""
        try:
            with self._io(f"check {path}"):
                self.sftp.stat(path)
            return True
        except (FileNotFoundError, RemoteCommandFailed):
            return False

    def put(self, local: Path | str, remote: str) -> None:
        """Copy a local file to the host; it appears at ``remote`` atomically (temp + rename)."""
        check_remote_path(remote)
        tmp = f"{remote}.rc-tmp-{uuid.uuid4().hex[:8]}"
        try:
            with self._io(f"upload {local} to {remote}"):
                self.sftp.put(str(local), tmp)
                self.sftp.posix_rename(tmp, remote)
        except RemoteCommandFailed:
            with contextlib.suppress(RemoteError, OSError):
                with self._io(f"remove {tmp}"):
                    self.sftp.remove(tmp)
            raise

    def get(self, remote: str, local: Path | str) -> None:
        """Copy a file from the host; it appears at ``local`` atomically (temp + rename)."""
        check_remote_path(remote)
        local = Path(local)
        tmp = local.with_name(f".{local.name}.rc-tmp-{uuid.uuid4().hex[:8]}")
        try:
            with self._io(f"download {remote}"):
                self.sftp.get(remote, str(tmp))
            os.replace(tmp, local)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def read_text(self, remote: str) -> str | None:
        """A small remote file's text, or None when it does not exist."""
        check_remote_path(remote)
        try:
            with self._io(f"read {remote}"), self.sftp.open(remote, "rb") as fh:
                return bytes(fh.read()).decode("utf-8")
        except FileNotFoundError:
            return None

    def write_text(self, remote: str, text: str, *, mode: int = 0o644) -> None:
        """Write a small remote file atomically (temp name, chmod, then rename)."""
        check_remote_path(remote)
        tmp = f"{remote}.rc-tmp-{uuid.uuid4().hex[:8]}"
        with self._io(f"write {remote}"):
            with self.sftp.open(tmp, "wb") as fh:
                fh.write(text.encode("utf-8"))
            self.sftp.chmod(tmp, mode)
            self.sftp.posix_rename(tmp, remote)
