"""Keep every test away from the developer's own environment; the fixtures every package shares.

No test sees the real ~/.ssh, ~/.aws, AWS_* or RC_* variables, or the real state dir:
HOME and the XDG dirs point into a temporary directory for each test.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

_SCRUB_PREFIXES = ("AWS_", "RC_", "SAGEMAKER_", "BOTO_")
_SCRUB_NAMES = ("COINGECKO_API_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "CLOUD_TRAINING_PROVIDER", "SSH_AUTH_SOCK")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if name.startswith(_SCRUB_PREFIXES) or name in _SCRUB_NAMES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    # boto3 must never fall back to real credential files or the instance metadata service.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # A launch would start a background watchdog that outlives the test; the tests that
    # are about the watchdog start (and stop) it themselves.
    monkeypatch.setenv("RC_WATCHDOG__AUTOSTART", "false")


@pytest.fixture(autouse=True, scope="session")
def no_daemon_outlives_the_tests(tmp_path_factory: pytest.TempPathFactory):
    """Sandbox daemons and watchdogs started by tests live under this session's temp dir;
    whatever a test's own teardown missed is stopped here, so no run leaves them behind."""
    yield
    import psutil

    base = str(tmp_path_factory.getbasetemp())
    leftovers = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if proc.pid != os.getpid() and "--state-dir" in cmdline and base in cmdline:
            leftovers.append(proc)
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(leftovers, timeout=10)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 (a free port), reached by boto3 over real HTTP."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
