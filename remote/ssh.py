"""The SSH runner: commands, detached jobs, log tails and file transfer on one pinned host.

Over paramiko's ``Transport`` directly, so the host key is checked by our code before
any credential is offered (remote/hostkeys.py: pinned per instance, learned only from a
trusted publication, a change refused). Every command we build is quoted with
``shlex.quote``; every remote path is checked by `check_remote_path` first.

Detached jobs survive the SSH connection dropping: they run under ``setsid nohup`` with
their log, pid and exit code kept in files under ``<login dir>/.rc-jobs/<job name>/`` on
the host, so a new connection can ask how the job is doing and resume its log from a
byte offset with no line lost or repeated.

Errors are translated here (remote/errors.py): HostUnreachable, HostKeyMismatch,
HostKeyUnknown, AuthFailed, ConnectionLost, RemoteCommandFailed, RemotePathRefused.
"""

from __future__ import annotations

import codecs
import contextlib
import enum
import fcntl
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import paramiko

from remote.errors import (
    AuthFailed,
    ConnectionLost,
    HostKeyMismatch,
    HostKeyUnknown,
    HostUnreachable,
    RemoteCommandFailed,
    RemotePathRefused,
)
from remote.hostkeys import HostKey, HostKeyStore, check_instance_id

_REMOTE_PATH = re.compile(r"^/?[A-Za-z0-9._+@=,-]+(/[A-Za-z0-9._+@=,-]+)*/?$")
_JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TAIL_LINES = 30


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


def _drain_stderr(chan: paramiko.Channel) -> str:
    text = b""
    while chan.recv_stderr_ready():
        text += chan.recv_stderr(65536)
    return text.decode("utf-8", "replace")


def _output_tail(lines: Sequence[str]) -> str:
    return " | ".join(line.strip() for line in list(lines)[-5:] if line.strip())[-400:]


class SSHRunner:
    """Commands, detached jobs, tails and transfers on one host, over one pinned connection.

    Use as a context manager or call `connect` / `close`. Methods connect lazily. Any
    connection failure mid-operation raises ConnectionLost; `reconnect` (or `follow_job`,
    which does it itself) brings the connection back with backoff.
    """

    def __init__(self, target: SSHTarget, *, sleep: Callable[[float], None] = time.sleep) -> None:
        check_instance_id(target.instance_id)
        check_remote_path(target.jobs_dir)
        self.target = target
        self.host_keys = HostKeyStore(target.known_hosts_dir)
        self._sleep = sleep
        self._transport: paramiko.Transport | None = None
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
    def connected(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def connect(self) -> None:
        """Open the connection: TCP, handshake, host-key check, public-key auth, keepalives.

        Raises HostUnreachable, HostKeyMismatch, HostKeyUnknown or AuthFailed.
        """
        with self._lock:
            if self.connected:
                return
            self._drop()
            t = self.target
            try:
                sock = socket.create_connection((t.host, t.port), timeout=t.connect_timeout_s)
            except OSError as exc:
                raise HostUnreachable(f"cannot reach {t.where} for {t.instance_id}: {exc.strerror or exc}; "
                                      f"check the host is up and its SSH port is open to you") from exc
            transport = paramiko.Transport(sock)
            transport.banner_timeout = t.connect_timeout_s
            transport.handshake_timeout = t.connect_timeout_s
            try:
                transport.start_client(timeout=t.connect_timeout_s)
                offered = transport.get_remote_server_key()
            except (paramiko.SSHException, EOFError, OSError) as exc:
                transport.close()
                raise HostUnreachable(f"SSH handshake with {t.where} failed: {exc}; "
                                      f"is an SSH server listening there?") from exc
            key = HostKey(offered.get_name(), offered.get_base64())
            try:
                # Before any credential leaves this machine: the host must prove it is pinned.
                self.host_keys.verify(t.instance_id, key, t.where, t.publication)
            except (HostKeyMismatch, HostKeyUnknown):
                transport.close()
                raise
            try:
                pkey = paramiko.PKey.from_path(str(t.key_path))
            except (OSError, paramiko.SSHException) as exc:
                transport.close()
                raise AuthFailed(f"cannot read private key {t.key_path}: {exc}; check the path and that it has no passphrase") from exc
            try:
                transport.auth_publickey(t.user, pkey)
            except paramiko.AuthenticationException as exc:
                transport.close()
                raise AuthFailed(f"{t.where} refused key {t.key_path} for user {t.user!r}; "
                                 f"check the user name and that the instance was launched with this key") from exc
            except (paramiko.SSHException, EOFError, OSError) as exc:
                transport.close()
                raise HostUnreachable(f"SSH authentication with {t.where} broke off: {exc}") from exc
            transport.set_keepalive(t.keepalive_s)
            self._transport = transport
            self._host_key = key
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
        for handle in self._tail_handles.values():
            with contextlib.suppress(Exception):
                handle.close()
        self._tail_handles.clear()
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
        self._sftp = None
        self._transport = None

    def _lost(self, exc: BaseException, doing: str) -> ConnectionLost:
        with self._lock:
            # Another thread may already have reconnected: keep a live connection.
            if not self.connected:
                self._drop()
        return ConnectionLost(f"connection to {self.target.where} lost while {doing}: {exc or type(exc).__name__}; "
                              f"it will be retried on reconnect")

    def _require(self) -> paramiko.Transport:
        self.connect()
        assert self._transport is not None
        return self._transport

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
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(transport)
                except (paramiko.SSHException, EOFError, OSError) as exc:
                    raise self._lost(exc, "opening SFTP") from exc
            return self._sftp

    @property
    def home(self) -> str:
        """The login directory on the host (relative remote paths start here)."""
        if self._home is None:
            try:
                self._home = self.sftp.normalize(".")
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise self._lost(exc, "finding the login directory") from exc
        return self._home

    def openssh_argv(self) -> list[str]:
        """``ssh`` argv that reaches this host with the same pin and key, for bulk streams
        and an interactive ``console instance ssh``; append ``--`` and a command."""
        self.connect()
        t = self.target
        assert self._host_key is not None
        return [
            "ssh", "-F", "/dev/null", "-i", str(t.key_path), "-p", str(t.port), "-l", t.user,
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={self.host_keys.path_for(t.instance_id)}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-o", f"HostKeyAlias={t.instance_id}", "-o", f"HostKeyAlgorithms={self._host_key.key_type}",
            "-o", f"ConnectTimeout={int(t.connect_timeout_s)}", "-o", f"ServerAliveInterval={t.keepalive_s}",
            # AES-GCM first: with AES-NI it moves bulk data ~2x faster than chacha20.
            "-o", "Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr",
            t.host,
        ]

    # --- commands ---------------------------------------------------------------

    def run(self, command: str | Sequence[str], *, timeout_s: float | None = None,
            on_output: Callable[[str], None] | None = None, check: bool = True,
            stdin: bytes | None = None) -> CommandResult:
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
                except socket.timeout:
                    data = None
                if data:
                    emit(decoder.decode(data))
                elif data == b"":
                    break
                if deadline is not None and time.monotonic() > deadline:
                    chan.close()
                    raise RemoteCommandFailed(
                        f"command timed out after {timeout_s:g} s on {self.target.where}: {cmd[:120]}",
                        command=cmd, exit_status=None, output_tail=_output_tail(tail))
                if not transport.is_active():
                    raise EOFError("transport closed")
            emit(decoder.decode(b"", final=True), final=True)
            if not chan.exit_status_ready() and not transport.is_active():
                raise EOFError("transport closed before the exit status arrived")
            status = chan.recv_exit_status()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost(exc, f"running {cmd[:80]!r}") from exc
        if status == -1 and not transport.is_active():
            raise self._lost(EOFError("no exit status"), f"running {cmd[:80]!r}")
        result = CommandResult(cmd, status, "\n".join(kept), time.monotonic() - started)
        if check and status != 0:
            raise RemoteCommandFailed(
                f"remote command exited {status} on {self.target.where}: {cmd[:120]}"
                + (f" -- {_output_tail(tail)}" if tail else ""),
                command=cmd, exit_status=status, output_tail="\n".join(tail))
        return result

    @contextlib.contextmanager
    def upload_stream(self, command: str, *, use_openssh: bool | None = None) -> Iterator[BinaryIO]:
        """A writable stream into ``command``'s stdin on the host; waits for it on exit.

        For bulk data (a tar stream) the system ``ssh`` is used when present -- OpenSSH
        moves bytes several times faster than a Python SSH stack -- with the same pinned
        key file and private key; otherwise a paramiko channel. A non-zero exit raises
        RemoteCommandFailed.
        """
        if use_openssh is None:
            use_openssh = shutil.which("ssh") is not None
        if use_openssh:
            argv = self.openssh_argv() + ["--", command]
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=err, stderr=err, bufsize=0)
                assert proc.stdin is not None
                with contextlib.suppress(OSError, AttributeError):
                    # A 1 MiB pipe (Linux F_SETPIPE_SZ) means fewer wake-ups per MiB sent.
                    fcntl.fcntl(proc.stdin.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
                broken = False
                try:
                    yield proc.stdin  # type: ignore[misc]
                    proc.stdin.close()
                except BrokenPipeError:
                    broken = True  # the far side ended early; its exit status says why
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
                status = proc.wait()
                err.seek(0)
                output = err.read().decode("utf-8", "replace")
            self._check_stream_exit(command, status, output, openssh=True)
            if broken:
                raise ConnectionLost(f"ssh stream to {self.target.where} closed before all data was sent")
            return
        transport = self._require()
        try:
            chan = transport.open_session(timeout=self.target.connect_timeout_s)
            chan.set_combine_stderr(True)
            chan.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost(exc, "opening an upload stream") from exc
        writer = _ChannelWriter(chan)
        try:
            yield writer  # type: ignore[misc]
            chan.shutdown_write()
            output = b""
            while True:
                data = chan.recv(65536)
                if not data:
                    break
                output = (output + data)[-4096:]
            status = chan.recv_exit_status()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost(exc, "streaming data") from exc
        finally:
            # Closing a channel on a dead transport raises too; the loss is already reported.
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                chan.close()
        self._check_stream_exit(command, status, output.decode("utf-8", "replace"), openssh=False)

    @contextlib.contextmanager
    def download_stream(self, command: str, *, use_openssh: bool | None = None) -> Iterator[BinaryIO]:
        """A readable stream of ``command``'s stdout on the host; waits for it on exit.

        Same transports as `upload_stream`. stderr is kept apart (it never mixes into the
        data); a non-zero exit raises RemoteCommandFailed with its tail.
        """
        if use_openssh is None:
            use_openssh = shutil.which("ssh") is not None
        if use_openssh:
            argv = self.openssh_argv() + ["--", command]
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
                assert proc.stdout is not None
                try:
                    yield proc.stdout  # type: ignore[misc]
                    proc.stdout.read()  # drain so the far side can finish
                except Exception as exc:
                    # A reader choking on short data usually means the far side failed:
                    # report that failure, not the reader's.
                    try:
                        status = proc.wait(timeout=2)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                        raise exc from None
                    err.seek(0)
                    self._check_stream_exit(command, status, err.read().decode("utf-8", "replace"), openssh=True)
                    raise
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
                status = proc.wait()
                err.seek(0)
                text = err.read().decode("utf-8", "replace")
            self._check_stream_exit(command, status, text, openssh=True)
            return
        transport = self._require()
        try:
            chan = transport.open_session(timeout=self.target.connect_timeout_s)
            chan.exec_command(command)
            chan.shutdown_write()
            reader = chan.makefile("rb", 1 << 20)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost(exc, "opening a download stream") from exc
        try:
            try:
                yield reader  # type: ignore[misc]
            except Exception:
                # The exit status trails the end of the data by a moment.
                chan.status_event.wait(2.0)
                if chan.exit_status_ready() and chan.recv_exit_status() != 0:
                    self._check_stream_exit(command, chan.recv_exit_status(), _drain_stderr(chan), openssh=False)
                raise
            while reader.read(1 << 20):
                pass
            status = chan.recv_exit_status()
            text = _drain_stderr(chan)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost(exc, "streaming data") from exc
        finally:
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                chan.close()
        self._check_stream_exit(command, status, text, openssh=False)

    def _check_stream_exit(self, command: str, status: int, output: str, *, openssh: bool) -> None:
        if openssh and status == 255:
            raise ConnectionLost(f"ssh stream to {self.target.where} failed: {_output_tail(output.splitlines())}")
        if status != 0:
            raise RemoteCommandFailed(
                f"remote command exited {status} on {self.target.where}: {command[:120]} -- "
                f"{_output_tail(output.splitlines())}", command=command, exit_status=status, output_tail=output[-2000:])

    # --- detached jobs ------------------------------------------------------------

    def job_dir(self, job_name: str) -> str:
        """The absolute directory on the host that holds the job's pid, log and exit files."""
        base = self.target.jobs_dir.rstrip("/")
        if not base.startswith("/"):
            base = f"{self.home}/{base}"
        return f"{base}/{check_job_name(job_name)}"

    def job_log_path(self, job_name: str) -> str:
        """The job's combined stdout/stderr log on the host."""
        return self.job_dir(job_name) + "/log"

    def run_detached(self, command: str | Sequence[str], job_name: str, *, cwd: str | None = None,
                     replace: bool = False) -> JobStatus:
        """Start ``command`` on the host so it outlives this connection; return its status.

        Idempotent per job name: if a job of that name exists (running or finished) it
        is left alone and its status returned, unless ``replace`` (which kills a running
        one first and starts afresh). ``cwd`` defaults to the login directory.
        """
        status = self.job_status(job_name)
        if status.state is not JobState.ABSENT:
            if not replace:
                return status
            if status.state is JobState.RUNNING:
                self.cancel_job(job_name, "KILL")
        cmd = quote_command(command)
        d = self.job_dir(job_name)
        workdir = check_remote_path(cwd) if cwd else self.home
        self.run(["sh", "-c", 'rm -rf -- "$0" && mkdir -p -- "$0" && : > "$0/log"', d])
        try:
            with self.sftp.open(d + "/cmd.sh", "w") as fh:
                fh.write(cmd + "\n")
        except (paramiko.SSHException, EOFError) as exc:
            raise self._lost(exc, "writing the job script") from exc
        except OSError as exc:
            raise RemoteCommandFailed(f"cannot write job script in {d} on {self.target.where}: {exc}",
                                      command="sftp put cmd.sh") from exc
        # $0 is the job dir. The exit code goes through a temp name so a reader never
        # sees half of it; pid likewise. A cancelled job (TERM/INT) records 143/130.
        wrapper = ('echo $$ > "$0/pid.tmp" && mv "$0/pid.tmp" "$0/pid"; '
                   'trap \'echo 143 > "$0/exit.tmp"; mv "$0/exit.tmp" "$0/exit"; exit 143\' TERM; '
                   'trap \'echo 130 > "$0/exit.tmp"; mv "$0/exit.tmp" "$0/exit"; exit 130\' INT; '
                   'sh "$0/cmd.sh" >> "$0/log" 2>&1; '
                   'echo $? > "$0/exit.tmp"; mv "$0/exit.tmp" "$0/exit"')
        q_wrap, q_dir = shlex.quote(wrapper), shlex.quote(d)
        launch = (
            f"cd {shlex.quote(workdir)} || exit 1; "
            f"if command -v setsid >/dev/null 2>&1; then S=setsid; else S=; fi; "
            f"$S nohup sh -c {q_wrap} {q_dir} </dev/null >/dev/null 2>&1 & "
            f"i=0; while [ ! -s {q_dir}/pid ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done"
        )
        self.run(launch, timeout_s=30)
        return self.job_status(job_name)

    def job_status(self, job_name: str) -> JobStatus:
        """Read the job's state from its files on the host (works from any new connection)."""
        d = self.job_dir(job_name)
        script = (
            'd="$0"; [ -d "$d" ] || { echo absent; exit 0; }; '
            'pid=$(cat "$d/pid" 2>/dev/null); ex=$(cat "$d/exit" 2>/dev/null); '
            'size=$(wc -c < "$d/log" 2>/dev/null || echo 0); '
            'if [ -z "$ex" ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then state=running; '
            # Re-read: the job may have written its exit code between the two looks.
            'else ex=$(cat "$d/exit" 2>/dev/null); if [ -n "$ex" ]; then state=exited; else state=died; fi; fi; '
            'echo "$state ${ex:--} ${pid:--} $size"'
        )
        out = self.run(["sh", "-c", script, d], timeout_s=30).output.split()
        log = d + "/log"
        if not out or out[0] == "absent":
            return JobStatus(job_name, JobState.ABSENT, None, None, log, 0)
        state, ex, pid, size = out[0], out[1], out[2], out[3]
        return JobStatus(job_name, JobState(state), int(ex) if ex.lstrip("-").isdigit() else None,
                         int(pid) if pid.isdigit() else None, log, int(size) if size.isdigit() else 0)

    def cancel_job(self, job_name: str, signal: str = "TERM") -> JobStatus:
        """Signal the job's whole process group (it was started as its own session)."""
        if signal not in ("TERM", "INT", "KILL", "HUP"):
            raise RemotePathRefused(f"signal {signal!r} is refused: use TERM, INT, KILL or HUP")
        status = self.job_status(job_name)
        if status.state is JobState.RUNNING and status.pid:
            self.run(["sh", "-c", 'kill -s "$0" -- "-$1" 2>/dev/null || kill -s "$0" "$1"', signal, str(status.pid)],
                     check=False)
            for _ in range(40):
                status = self.job_status(job_name)
                if status.finished:
                    break
                self._sleep(0.05)
        return status

    # --- tails --------------------------------------------------------------------

    def tail(self, path: str, offset: int = 0, *, max_bytes: int = 1 << 20,
             whole_lines: bool = True) -> tuple[bytes, int]:
        """Bytes of a remote file from ``offset`` and the offset to ask for next time.

        With ``whole_lines`` only complete lines are returned, so a reader that resumes
        from the returned offset (on this or a new connection) never splits, loses or
        repeats a line. A file that does not exist yet reads as empty.
        """
        check_remote_path(path)
        try:
            handle = self._tail_handles.get(path)
            if handle is None:
                handle = self.sftp.open(path, "rb")
                self._tail_handles[path] = handle
            handle.seek(offset)
            data = handle.read(max_bytes)
        except FileNotFoundError:
            return b"", offset
        except (paramiko.SSHException, EOFError, OSError) as exc:
            # An SFTP status error (permission, a directory) arrives as OSError on a live link.
            if self.connected and isinstance(exc, OSError):
                raise RemoteCommandFailed(f"cannot read {path} on {self.target.where}: {exc}",
                                          command=f"sftp read {path}") from exc
            raise self._lost(exc, f"reading {path}") from exc
        if whole_lines:
            cut = data.rfind(b"\n") + 1
            # A line longer than max_bytes would never complete: hand it over in pieces.
            if cut or len(data) < max_bytes:
                data = data[:cut]
        return data, offset + len(data)

    def follow_job(self, job_name: str, on_line: Callable[[str], None], *, offset: int = 0,
                   poll_s: float = 0.05, status_every_s: float = 1.0,
                   max_reconnect_wait_s: float = 120.0,
                   on_reconnect: Callable[[int], None] | None = None) -> FollowResult:
        """Stream a detached job's log line by line until the job ends; survive drops.

        Starts at byte ``offset`` (0, or the ``offset`` of an earlier FollowResult); if
        the connection drops it reconnects with backoff and resumes from the last whole
        line delivered, so ``on_line`` sees every line exactly once.
        """
        log = self.job_log_path(job_name)
        reconnects = 0
        last_check = 0.0
        last_full = 0.0
        decoder_errors = "replace"
        while True:
            try:
                data, new_offset = self.tail(log, offset)
                if data:
                    for line in data.decode("utf-8", decoder_errors).split("\n")[:-1]:
                        on_line(line)
                    offset = new_offset
                    continue
                now = time.monotonic()
                if now - last_check >= status_every_s:
                    last_check = now
                    # A stat of the exit file is one SFTP round trip; the full status
                    # (a shell on the host) only when it exists, or now and then to
                    # notice a job that died without writing one.
                    status = None
                    if self._exists(self.job_dir(job_name) + "/exit") or now - last_full >= 10 * status_every_s:
                        last_full = now
                        status = self.job_status(job_name)
                    if status is not None and (status.finished or status.state is JobState.ABSENT):
                        # Drain what was written before it ended, the last line too.
                        while True:
                            data, new_offset = self.tail(log, offset, whole_lines=False)
                            if not data:
                                break
                            text = data.decode("utf-8", decoder_errors)
                            for line in (text[:-1] if text.endswith("\n") else text).split("\n"):
                                on_line(line)
                            offset = new_offset
                        return FollowResult(status, offset, reconnects)
                self._sleep(poll_s)
            except ConnectionLost:
                self.reconnect(max_reconnect_wait_s)
                reconnects += 1
                if on_reconnect is not None:
                    on_reconnect(reconnects)

    # --- files --------------------------------------------------------------------

    def _exists(self, path: str) -> bool:
        try:
            self.sftp.stat(path)
            return True
        except FileNotFoundError:
            return False
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if self.connected and isinstance(exc, OSError):
                return False
            raise self._lost(exc, f"checking {path}") from exc

    def put(self, local: Path | str, remote: str) -> None:
        """Copy a local file to the host; it appears at ``remote`` atomically (temp + rename)."""
        check_remote_path(remote)
        tmp = f"{remote}.rc-tmp-{uuid.uuid4().hex[:8]}"
        try:
            self.sftp.put(str(local), tmp)
            self.sftp.posix_rename(tmp, remote)
        except (paramiko.SSHException, EOFError) as exc:
            raise self._lost(exc, f"uploading {remote}") from exc
        except OSError as exc:
            with contextlib.suppress(Exception):
                self.sftp.remove(tmp)
            raise RemoteCommandFailed(f"cannot upload {local} to {remote} on {self.target.where}: {exc}",
                                      command=f"sftp put {remote}") from exc

    def get(self, remote: str, local: Path | str) -> None:
        """Copy a file from the host; it appears at ``local`` atomically (temp + rename)."""
        check_remote_path(remote)
        local = Path(local)
        tmp = local.with_name(f".{local.name}.rc-tmp-{uuid.uuid4().hex[:8]}")
        try:
            self.sftp.get(remote, str(tmp))
            os.replace(tmp, local)
        except (paramiko.SSHException, EOFError) as exc:
            tmp.unlink(missing_ok=True)
            raise self._lost(exc, f"downloading {remote}") from exc
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RemoteCommandFailed(f"cannot download {remote} from {self.target.where}: {exc}",
                                      command=f"sftp get {remote}") from exc

    def read_text(self, remote: str) -> str | None:
        """A small remote file's text, or None when it does not exist."""
        check_remote_path(remote)
        try:
            with self.sftp.open(remote, "rb") as fh:
                return fh.read().decode("utf-8")
        except FileNotFoundError:
            return None
        except (paramiko.SSHException, EOFError) as exc:
            raise self._lost(exc, f"reading {remote}") from exc

    def write_text(self, remote: str, text: str, *, mode: int = 0o644) -> None:
        """Write a small remote file atomically (temp name, chmod, then rename)."""
        check_remote_path(remote)
        tmp = f"{remote}.rc-tmp-{uuid.uuid4().hex[:8]}"
        try:
            with self.sftp.open(tmp, "wb") as fh:
                fh.write(text.encode("utf-8"))
            self.sftp.chmod(tmp, mode)
            self.sftp.posix_rename(tmp, remote)
        except (paramiko.SSHException, EOFError) as exc:
            raise self._lost(exc, f"writing {remote}") from exc
        except OSError as exc:
            raise RemoteCommandFailed(f"cannot write {remote} on {self.target.where}: {exc}",
                                      command=f"sftp write {remote}") from exc


@dataclass
class _ChannelWriter:
    """A file-like ``write`` over a paramiko channel (fallback bulk stream)."""

    chan: paramiko.Channel
    written: int = field(default=0)

    def write(self, data: bytes) -> int:
        self.chan.sendall(data)
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        raise OSError("a paramiko channel has no file descriptor")
