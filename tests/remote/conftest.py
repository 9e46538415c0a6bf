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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from remote.sandbox.openssh import SSHD, RunningSSHD, write_ed25519_key
from remote.sandbox.openssh import start_sshd as _start_sshd
from remote.ssh import SSHTarget


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the developer's HOME, SSH agent and AWS settings."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never probe a metadata service
    for name in list(os.environ):
        if (name.startswith("AWS_") and name != "AWS_EC2_METADATA_DISABLED") or name in ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "BOTO_CONFIG"):
            monkeypatch.delenv(name, raising=False)


@dataclass
class ClientKey:
    private_path: Path
    public_line: str





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
