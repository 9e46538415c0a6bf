"""Fixtures for remote/: a real OpenSSH sshd and a real moto S3 server, both on 127.0.0.1.

Nothing here reads the developer's ~/.ssh, SSH agent or AWS_* environment: HOME points
at a temporary directory, keys are generated at test time, and the AWS credentials are
random strings made per session.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from remote.ssh import SSHTarget

SSHD = Path("/usr/sbin/sshd")


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the developer's HOME, SSH agent and AWS settings."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe a metadata service
    for name in list(os.environ):
        if (name.startswith("AWS_") and name != "AWS_EC2_METADATA_DISABLED") or name in ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "BOTO_CONFIG"):
            monkeypatch.delenv(name, raising=False)


def write_ed25519_key(path: Path) -> str:
    """Write a fresh OpenSSH ed25519 private key (0600) at ``path``; return its public line."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
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
        return ("cloud-init: generating keys\n-----BEGIN SSH HOST KEY KEYS-----\n"
                f"{self.host_public_key} root@ip-10-0-0-1\n-----END SSH HOST KEY KEYS-----\n")

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


@dataclass
class ClientKey:
    private_path: Path
    public_line: str


def _start_sshd(directory: Path, authorized_keys: Path, extra_config: tuple[str, ...] = ()) -> RunningSSHD:
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
        config.write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
            f"AuthorizedKeysFile {authorized_keys}", f"PidFile {directory / 'sshd.pid'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "UsePAM no", "StrictModes no", "PermitRootLogin yes", f"AllowUsers {getpass.getuser()}",
            "Subsystem sftp internal-sftp", "MaxSessions 50", "MaxStartups 50", "LogLevel ERROR",
            "ClientAliveInterval 0", *extra_config, "",
        ]))
        log = open(directory / "sshd.log", "ab")
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
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


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> ClientKey:
    """A client key pair made for this test session (never the developer's)."""
    d = tmp_path_factory.mktemp("client-key")
    path = d / "id_ed25519"
    return ClientKey(path, write_ed25519_key(path))


@pytest.fixture(scope="session")
def start_sshd(tmp_path_factory: pytest.TempPathFactory, client_key: ClientKey) -> Iterator[Callable[[], RunningSSHD]]:
    """Factory: start another sshd (new host key, new port) that accepts `client_key`;
    arguments are extra sshd_config lines."""
    if not SSHD.exists():
        pytest.skip("/usr/sbin/sshd is absent: install openssh-server to run the SSH tests")
    started: list[RunningSSHD] = []

    def start(*extra_config: str) -> RunningSSHD:
        d = tmp_path_factory.mktemp("sshd")
        authorized = d / "authorized_keys"
        authorized.write_text(client_key.public_line + "\n")
        os.chmod(authorized, 0o600)
        server = _start_sshd(d, authorized, extra_config)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def sshd(start_sshd: Callable[[], RunningSSHD]) -> RunningSSHD:
    """The shared sshd for the session."""
    return start_sshd()


@pytest.fixture
def make_target(tmp_path: Path, client_key: ClientKey) -> Callable[..., SSHTarget]:
    """Factory for an SSHTarget at a given sshd, pinned under this test's tmp dir."""

    def make(server: RunningSSHD, *, instance_id: str = "i-0123456789abcdef0",
             publication: str | None = "console", **overrides: object) -> SSHTarget:
        if publication == "console":
            publication = server.console_output
        jobs = tmp_path / "jobs"
        jobs.mkdir(exist_ok=True)
        fields: dict[str, object] = dict(
            instance_id=instance_id, host="127.0.0.1", port=server.port, user=getpass.getuser(),
            key_path=client_key.private_path, known_hosts_dir=tmp_path / "known_hosts",
            publication=publication, connect_timeout_s=5.0, keepalive_s=5, jobs_dir=str(jobs),
        )
        fields.update(overrides)
        return SSHTarget(**fields)  # type: ignore[arg-type]

    return make


@pytest.fixture
def target(make_target: Callable[..., SSHTarget], sshd: RunningSSHD) -> SSHTarget:
    """A target at the shared sshd whose key is published in EC2 console-output form."""
    return make_target(sshd)


@pytest.fixture
def remote_dir(tmp_path: Path) -> Path:
    """A directory the sshd user can write, standing in for a directory on the host."""
    d = tmp_path / "remote"
    d.mkdir()
    return d


# --- S3 (moto over real HTTP) ---------------------------------------------------------


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake AWS credentials made at run time (moto accepts any)."""
    creds = {
        "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name, value in creds.items():
        monkeypatch.setenv(name, value)
    return creds


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
