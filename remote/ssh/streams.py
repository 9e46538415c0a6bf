"""Bulk byte streams to and from a host: a tar stream into a command's stdin, or out of its stdout.

For bulk data the system ``ssh`` is used when present -- OpenSSH moves bytes several times
faster than a Python SSH stack -- with the runner's own pinned known-hosts file and private
key and nothing of the operator's (`SSHStreams.openssh_argv`); otherwise a channel on the
open connection. A non-zero exit of the far command raises RemoteCommandFailed with its
tail; a broken link, ConnectionLost.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import paramiko

from remote.errors import ConnectionLost, RemoteCommandFailed
from remote.hostkeys import HostKey, HostKeyStore
from remote.ssh.connection import SSHTarget


class SSHStreams:
    """Streams for `remote.ssh.SSHRunner` (which provides the connection and its pin)."""

    target: SSHTarget
    host_keys: HostKeyStore
    _host_key: HostKey | None

    def connect(self) -> None:
        raise NotImplementedError

    def _require(self) -> paramiko.Transport:
        raise NotImplementedError

    def _lost(self, exc: BaseException, doing: str) -> ConnectionLost:
        raise NotImplementedError

    def openssh_argv(self) -> list[str]:
        """``ssh`` argv that reaches this host with the same pin and key, for bulk streams
        and an interactive ``console instance ssh``; append ``--`` and a command."""
        self.connect()
        t = self.target
        assert self._host_key is not None
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(t.key_path),
            "-p",
            str(t.port),
            "-l",
            t.user,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={self.host_keys.path_for(t.instance_id)}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"HostKeyAlias={t.instance_id}",
            "-o",
            f"HostKeyAlgorithms={self._host_key.key_type}",
            "-o",
            f"ConnectTimeout={int(t.connect_timeout_s)}",
            "-o",
            f"ServerAliveInterval={t.keepalive_s}",
            # AES-GCM first: with AES-NI it moves bulk data ~2x faster than chacha20.
            "-o",
            "Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr",
            t.host,
        ]

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
            received = b""
            while True:
                data = chan.recv(65536)
                if not data:
                    break
                received = (received + data)[-4096:]
            status = chan.recv_exit_status()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost(exc, "streaming data") from exc
        finally:
            # Closing a channel on a dead transport raises too; the loss is already reported.
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                chan.close()
        self._check_stream_exit(command, status, received.decode("utf-8", "replace"), openssh=False)

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
                yield reader
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
                f"{_output_tail(output.splitlines())}",
                command=command,
                exit_status=status,
                output_tail=output[-2000:],
            )


def _drain_stderr(chan: paramiko.Channel) -> str:
    text = b""
    while chan.recv_stderr_ready():
        text += chan.recv_stderr(65536)
    return text.decode("utf-8", "replace")


def _output_tail(lines: Sequence[str]) -> str:
    return " | ".join(line.strip() for line in list(lines)[-5:] if line.strip())[-400:]


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
