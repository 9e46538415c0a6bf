"""`console exec` and `console sync` through the CLI, against a real sshd.

The instance is one the state store knows (as after `console instance launch`) whose
host key was pinned by an earlier connection, as the sync step leaves it.
"""

from __future__ import annotations

import getpass
import time

import pytest
from click.testing import CliRunner

from console.cli import cli
from console.state import StateStore
from remote.hostkeys import HostKeyStore, parse_publication

INSTANCE = "i-0c11c11c11c11c11c"


@pytest.fixture
def state_dir(tmp_path, sshd, client_key, monkeypatch):
    state = tmp_path / "state"
    store = StateStore.open(state)
    store.upsert_instance(INSTANCE, run_id=None, provider="static", state="running", launched_at=time.time(),
                          data={"public_address": "127.0.0.1", "port": sshd.port, "ssh_user": getpass.getuser(),
                                "key_path": str(client_key.private_path)})
    HostKeyStore(state / "known_hosts").pin(INSTANCE, parse_publication(sshd.host_public_key).keys[0])
    monkeypatch.setenv("RC_STATE_DIR", str(state))
    monkeypatch.setenv("RC_PROFILE", "aws")
    return state


def _console(*args: str):
    return CliRunner().invoke(cli, list(args), standalone_mode=False, catch_exceptions=True)


def test_exec_streams_output_and_quotes_each_word(state_dir, tmp_path):
    result = _console("exec", INSTANCE, "--", "echo", "a;b", "$(id)")
    assert result.exception is None, result.output
    assert result.output.strip() == "a;b $(id)"


def test_exec_exits_with_the_remote_status(state_dir):
    result = _console("exec", INSTANCE, "--", "sh", "-c", "exit 3")
    assert isinstance(result.exception, SystemExit) and result.exception.code == 3


def test_sync_command_reports_and_refuses_bad_destinations(state_dir, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    (local / "a.txt").write_text("a")
    dest = tmp_path / "host"
    result = _console("sync", str(local), f"{INSTANCE}:{dest}")
    assert result.exception is None, result.output
    assert "sent 1 files" in result.output and (dest / "a.txt").read_text() == "a"
    bad = _console("sync", str(local), f"{INSTANCE}:{dest};rm")
    assert getattr(bad.exception, "exit_code", None) == 2
    unknown = _console("exec", "i-nope", "--", "true")
    assert getattr(unknown.exception, "exit_code", None) == 2
