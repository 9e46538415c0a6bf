"""Fixtures for tests that need the sandbox daemon (moto + SSH hosts) running for real.

One daemon per test session (per xdist worker): starting it costs a few seconds, and
tests keep out of each other's way with their own run ids and key directories. Import
the fixtures you use into the test module::

    from tests.remote.sandbox_fixtures import sandbox, ec2, provider, pinned_client  # noqa: F401
"""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from remote.providers.base import LaunchSpec
from remote.providers.ec2 import Ec2SpotProvider
from remote.providers.aws_client import make_client
from remote.sandbox.endpoints import SandboxEndpoints, SshEndpoint
from remote.sandbox.lifecycle import down, ensure_up

_shared: dict[str, SandboxEndpoints] = {}
_run_ids = itertools.count(1)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[SandboxEndpoints]:
    """The session's sandbox daemon (started once; stopped at the end of the session)."""
    if "endpoints" not in _shared:
        state_dir = tmp_path_factory.mktemp("sandbox-state")
        # Session fixtures start before the per-test environment isolation: do it here too.
        saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("AWS_") or k == "HOME"}
        os.environ["HOME"] = str(tmp_path_factory.mktemp("sandbox-home"))
        try:
            _shared["endpoints"] = ensure_up(state_dir)
        finally:
            os.environ.pop("HOME", None)
            os.environ.update(saved)
        request.addfinalizer(lambda: down(state_dir))
    yield _shared["endpoints"]


@pytest.fixture
def provider(sandbox: SandboxEndpoints, tmp_path: Path) -> Ec2SpotProvider:
    """The EC2 spot provider pointed at the sandbox, keys under this test's tmp dir."""
    return sandbox.ec2_provider(tmp_path / "keys")


@pytest.fixture
def ec2(sandbox: SandboxEndpoints):
    """A raw boto3 EC2 client on the sandbox (for looking behind the provider)."""
    return make_client("ec2", sandbox.aws_target())


def new_run_id(prefix: str = "t") -> str:
    """A run id no other test in this session uses."""
    return f"{prefix}-{os.getpid()}-{next(_run_ids)}"


def spec_for(run_id: str, **overrides) -> LaunchSpec:
    """A launch spec for tests: SSH from 127.0.0.1 only."""
    fields = dict(run_id=run_id, owner="tester", ssh_cidr="127.0.0.1/32")
    fields.update(overrides)
    return LaunchSpec(**fields)


def pinned_client(endpoint: SshEndpoint, key_path: Path, *, host_key: str | None = None,
                  timeout: float = 10.0) -> paramiko.SSHClient:
    """A paramiko client that trusts exactly `host_key` (default: the published one). No AutoAddPolicy."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key_type, b64 = (host_key or endpoint.host_key).split()[:2]
    client.get_host_keys().add(f"[{endpoint.host}]:{endpoint.port}", key_type,
                               paramiko.PKey.from_type_string(key_type, base64.b64decode(b64)))
    client.connect(endpoint.host, port=endpoint.port, username=endpoint.user, key_filename=str(key_path),
                   look_for_keys=False, allow_agent=False, timeout=timeout, banner_timeout=timeout,
                   auth_timeout=timeout)
    return client


def run(client: paramiko.SSHClient, command: str, timeout: float = 20.0) -> tuple[int, str, str]:
    """Run a command; (exit status, stdout, stderr)."""
    _, out, err = client.exec_command(command, timeout=timeout)
    stdout, stderr = out.read().decode(), err.read().decode()
    return out.channel.recv_exit_status(), stdout, stderr
