"""The SSH runner against a real OpenSSH sshd on 127.0.0.1: pinning, commands, jobs, tails."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from remote.errors import (
    AuthFailed,
    HostKeyMismatch,
    HostKeyUnknown,
    HostUnreachable,
    RemoteCommandFailed,
    RemotePathRefused,
)
from remote.hostkeys import HostKeyStore, parse_publication
from remote.ssh import JobState, SSHRunner, check_remote_path

from .conftest import write_ed25519_key


def test_first_connect_pins_the_key_from_console_output(target, sshd):
    with SSHRunner(target) as runner:
        assert runner.run(["echo", "hello"]).output == "hello"
    pinned = HostKeyStore(target.known_hosts_dir).pinned(target.instance_id)
    assert [f"{k.key_type} {k.base64}" for k in pinned] == [sshd.host_public_key]
    # Later connections need no publication: the pin is enough.
    with SSHRunner(dataclasses.replace(target, publication=None)) as runner:
        assert runner.run("echo again").output == "again"


def test_changed_host_key_is_refused_with_one_line(make_target, sshd, start_sshd):
    target = make_target(sshd)
    with SSHRunner(target) as runner:
        runner.run("true")
    impostor = start_sshd()  # same instance id, another host key
    moved = dataclasses.replace(target, port=impostor.port, publication=impostor.console_output)
    with pytest.raises(HostKeyMismatch) as info:
        SSHRunner(moved).connect()
    message = str(info.value)
    assert "\n" not in message and "changed" in message and info.value.exit_code == 3
    # The pin was not overwritten by the refused key.
    assert HostKeyStore(target.known_hosts_dir).pinned(target.instance_id)[0].base64 in sshd.host_public_key


def test_key_not_listed_in_publication_is_refused(make_target, sshd, tmp_path):
    other = write_ed25519_key(tmp_path / "other_key")
    with pytest.raises(HostKeyMismatch, match="do not list"):
        SSHRunner(make_target(sshd, publication=other)).connect()
    assert not HostKeyStore(tmp_path / "known_hosts").pinned("i-0123456789abcdef0")


def test_no_pin_and_no_publication_is_refused(make_target, sshd):
    with pytest.raises(HostKeyUnknown):
        SSHRunner(make_target(sshd, publication=None)).connect()


def test_publication_by_fingerprint_is_accepted(make_target, sshd):
    fp = parse_publication(sshd.host_public_key).keys[0].fingerprint
    block = f"-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 {fp} root@ip (ED25519)\n-----END SSH HOST KEY FINGERPRINTS-----"
    with SSHRunner(make_target(sshd, publication=block)) as runner:
        assert runner.run("echo ok").output == "ok"


def test_wrong_client_key_is_auth_failed(make_target, sshd, tmp_path):
    stranger = tmp_path / "stranger"
    write_ed25519_key(stranger)
    with pytest.raises(AuthFailed) as info:
        SSHRunner(make_target(sshd, key_path=stranger)).connect()
    assert info.value.exit_code == 2


def test_unreachable_host_is_one_clear_line(make_target, sshd):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HostUnreachable, match="cannot reach"):
        SSHRunner(make_target(sshd, port=port)).connect()


def test_run_streams_lines_and_reports_failure_with_tail(target):
    seen: list[str] = []
    with SSHRunner(target) as runner:
        result = runner.run("printf 'a\\nb\\n'; echo c >&2", on_output=seen.append)
        assert seen == ["a", "b", "c"] and result.exit_status == 0
        with pytest.raises(RemoteCommandFailed) as info:
            runner.run("echo boom; exit 7")
    assert info.value.exit_status == 7 and "boom" in info.value.output_tail and info.value.command
    assert "\n" not in str(info.value)


def test_run_timeout_raises(target):
    with SSHRunner(target) as runner, pytest.raises(RemoteCommandFailed, match="timed out"):
        runner.run("sleep 5", timeout_s=0.5)


def test_shell_metacharacters_in_arguments_are_quoted(target, remote_dir):
    evil = "x; touch PWNED; $(touch PWNED2) `touch PWNED3`"
    with SSHRunner(target) as runner:
        out = runner.run(["echo", evil]).output
    assert out == evil
    assert not any(p.name.startswith("PWNED") for p in Path(target.jobs_dir).parent.rglob("*"))


@pytest.mark.parametrize("path", ["a b", "x;rm -rf /", "$(id)", "../etc", "a/../b", "~/x", "a\nb", "", "a|b"])
def test_remote_paths_with_metacharacters_are_refused(path):
    with pytest.raises(RemotePathRefused):
        check_remote_path(path)


def test_detached_job_records_exit_code_and_is_idempotent(target):
    with SSHRunner(target) as runner:
        status = runner.run_detached("echo one; exit 3", "job-exit")
        for _ in range(100):
            status = runner.job_status("job-exit")
            if status.finished:
                break
            time.sleep(0.05)
        assert status.state is JobState.EXITED and status.exit_code == 3
        # Same name again: nothing restarts.
        again = runner.run_detached("echo two", "job-exit")
        assert again.exit_code == 3
        assert runner.tail(again.log_path)[0] == b"one\n"
        assert runner.job_status("never-started").state is JobState.ABSENT


def test_tail_returns_whole_lines_and_resumes_from_offset(target, remote_dir):
    log = remote_dir / "app.log"
    log.write_bytes(b"first\nsecond\npart")
    with SSHRunner(target) as runner:
        data, offset = runner.tail(str(log))
        assert data == b"first\nsecond\n" and offset == 13
        with log.open("ab") as fh:
            fh.write(b"ial\nthird\n")
        data, offset = runner.tail(str(log), offset)
        assert data == b"partial\nthird\n"
        assert runner.tail(str(remote_dir / "missing.log"), 0) == (b"", 0)


@pytest.mark.slow
def test_dropped_connection_mid_command_leaves_detached_job_running_and_tail_resumes(target, sshd):
    """Kill the SSH session server-side while following a job: the job goes on, and the
    reconnected tail delivers every line exactly once."""
    script = "i=1; while [ $i -le 40 ]; do echo line-$i; i=$((i+1)); sleep 0.05; done"
    lines: list[str] = []
    with SSHRunner(target) as runner:
        runner.run_detached(script, "job-drop")
        # A plain (non-detached) command running at the same time dies with the link.
        failures: list[Exception] = []

        def plain() -> None:
            try:
                runner.run("sleep 10", timeout_s=20)
            except Exception as exc:  # noqa: BLE001 - the test inspects it
                failures.append(exc)

        t = threading.Thread(target=plain)
        t.start()

        def on_line(line: str) -> None:
            lines.append(line)
            if len(lines) == 10:
                assert sshd.kill_sessions() >= 1

        result = runner.follow_job("job-drop", on_line)
        t.join(10)
    assert result.status.state is JobState.EXITED and result.status.exit_code == 0
    assert lines == [f"line-{i}" for i in range(1, 41)]
    # It reconnected: explicitly in follow_job, or lazily on its next read.
    assert runner.connections >= 2
    assert failures and type(failures[0]).__name__ in ("ConnectionLost", "RemoteCommandFailed")


@pytest.mark.slow
def test_follow_reconnects_when_dropped_mid_tail_without_gaps_or_duplicates(target, sshd):
    script = "i=1; while [ $i -le 30 ]; do echo tick-$i; i=$((i+1)); sleep 0.03; done"
    lines: list[str] = []
    reconnects: list[int] = []
    with SSHRunner(target) as runner:
        runner.run_detached(script, "job-tail-drop")

        def on_line(line: str) -> None:
            lines.append(line)
            if len(lines) in (5, 15):
                sshd.kill_sessions()

        result = runner.follow_job("job-tail-drop", on_line, on_reconnect=reconnects.append)
    assert lines == [f"tick-{i}" for i in range(1, 31)]
    assert result.reconnects == len(reconnects) >= 1 and result.status.exit_code == 0


def test_follow_delivers_last_line_without_newline(target):
    lines: list[str] = []
    with SSHRunner(target) as runner:
        runner.run_detached("echo a; printf b", "job-nonl")
        result = runner.follow_job("job-nonl", lines.append, status_every_s=0.1)
    assert lines == ["a", "b"] and result.offset == 3


def test_cancel_job_stops_its_process_group(target):
    with SSHRunner(target) as runner:
        runner.run_detached("sleep 30 & sleep 30; wait", "job-cancel")
        assert runner.job_status("job-cancel").state is JobState.RUNNING
        status = runner.cancel_job("job-cancel")
    assert status.state is JobState.EXITED and status.exit_code == 143


def test_put_and_get_land_atomically(target, remote_dir, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 100_000)
    with SSHRunner(target) as runner:
        runner.put(src, str(remote_dir / "dst.bin"))
        runner.get(str(remote_dir / "dst.bin"), tmp_path / "back.bin")
        with pytest.raises(RemotePathRefused):
            runner.put(src, str(remote_dir) + "/a;b")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    assert sorted(p.name for p in remote_dir.iterdir()) == ["dst.bin"]


def test_openssh_argv_uses_the_pin_not_the_users_known_hosts(target):
    import subprocess

    with SSHRunner(target) as runner:
        argv = runner.openssh_argv()
    out = subprocess.run(argv + ["--", "echo", "via-openssh"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "via-openssh"
    assert "StrictHostKeyChecking=yes" in argv
