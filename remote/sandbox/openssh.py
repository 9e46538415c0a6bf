"""A throwaway OpenSSH server on 127.0.0.1, for benches and tests of the SSH runner.

`start_sshd` runs the system's ``/usr/sbin/sshd`` in the foreground with a config of its
own (a free port on 127.0.0.1, a fresh host key, public-key login for the current user with
the keys it is given, SFTP), so the runner is measured and tested against the real thing.
Nothing of the operator's ``~/.ssh`` is read.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

SSHD = Path("/usr/sbin/sshd")


def write_ed25519_key(path: Path) -> str:
    """Write a fresh OpenSSH ed25519 private key (0600) at ``path``; return its public line."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningSSHD:
    """One sshd listening on 127.0.0.1 with its own host key."""

    port: int
    process: subprocess.Popen
    host_public_key: str
    """``ssh-ed25519 AAAA...`` line: what a trusted publication would list."""
    directory: Path

    @property
    def console_output(self) -> str:
        """The host key as EC2's console output publishes it."""
        return (
            "cloud-init: generating keys\n-----BEGIN SSH HOST KEY KEYS-----\n"
            f"{self.host_public_key} root@ip-10-0-0-1\n-----END SSH HOST KEY KEYS-----\n"
        )

    def kill_sessions(self) -> int:
        """Kill every per-connection sshd process (drops all live connections); the
        listener stays. Returns how many were killed."""
        killed = 0
        for child in psutil.Process(self.process.pid).children(recursive=False):
            try:
                child.send_signal(signal.SIGKILL)
                killed += 1
            except psutil.NoSuchProcess:
                pass
        return killed

    def stop(self) -> None:
        self.kill_sessions()
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_sshd(directory: Path, authorized_keys: Path, extra_config: tuple[str, ...] = ()) -> RunningSSHD:
    """A real OpenSSH sshd on 127.0.0.1 (a free port), its own host key, only ``authorized_keys``."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    host_public = write_ed25519_key(host_key)
    if os.geteuid() == 0:
        # As root sshd wants its privilege-separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    last_error = ""
    for _ in range(5):
        port = _free_port()
        config = directory / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {authorized_keys}",
                    f"PidFile {directory / 'sshd.pid'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "UsePAM no",
                    "StrictModes no",
                    "PermitRootLogin yes",
                    f"AllowUsers {getpass.getuser()}",
                    "Subsystem sftp internal-sftp",
                    "MaxSessions 50",
                    "MaxStartups 50",
                    "LogLevel ERROR",
                    "ClientAliveInterval 0",
                    *extra_config,
                    "",
                ]
            )
        )
        log = open(directory / "sshd.log", "ab")
        proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return RunningSSHD(port, proc, host_public, directory)
            except OSError:
                time.sleep(0.05)
        proc.kill()
        proc.wait()
        last_error = (directory / "sshd.log").read_text(errors="replace")[-300:]
    raise RuntimeError(f"sshd did not start: {last_error}")
