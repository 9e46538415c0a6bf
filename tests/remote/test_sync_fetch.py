"""Bringing a directory back from the host: whole, and never outside the target."""

from __future__ import annotations

import os

import pytest

from remote.errors import ArtifactPathEscape, RemoteCommandFailed
from remote.ssh import SSHRunner
from remote.sync import fetch_dir


@pytest.mark.parametrize("use_openssh", [False, True], ids=["paramiko", "openssh"])
def test_fetch_dir_copies_the_remote_tree(target, remote_dir, tmp_path, use_openssh):
    (remote_dir / "models/BTC-USD").mkdir(parents=True)
    payload = os.urandom(3 << 20)
    (remote_dir / "models/BTC-USD/model.pt").write_bytes(payload)
    (remote_dir / "roster.json").write_text("[]")
    with SSHRunner(target) as runner:
        report = fetch_dir(runner, str(remote_dir), tmp_path / "back", use_openssh=use_openssh)
    assert report.files_sent == 2 and report.bytes_sent == len(payload) + 2
    assert (tmp_path / "back/models/BTC-USD/model.pt").read_bytes() == payload


def test_fetch_refuses_a_host_that_sends_a_symlink_out(target, remote_dir, tmp_path):
    (remote_dir / "ok.txt").write_text("fine")
    (remote_dir / "evil").symlink_to("/etc")
    with SSHRunner(target) as runner, pytest.raises(ArtifactPathEscape):
        fetch_dir(runner, str(remote_dir), tmp_path / "back")


def test_fetch_of_missing_dir_is_a_command_failure(target, tmp_path):
    with SSHRunner(target) as runner, pytest.raises(RemoteCommandFailed):
        fetch_dir(runner, str(tmp_path / "nope"), tmp_path / "back", use_openssh=False)
