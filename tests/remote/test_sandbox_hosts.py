"""Sandbox SSH hosts: real SSH servers that appear and vanish with moto's instances."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import paramiko
import pytest

from remote.errors import SandboxHostUnknown
from remote.sandbox.openssh import write_ed25519_key
from tests.remote.sandbox_fixtures import ec2, new_run_id, pinned_client, provider, run, sandbox, spec_for  # noqa: F401


def _wait_for(condition, timeout_s: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def launched(provider):
    """A launched sandbox instance; terminated afterwards if the test did not."""
    launched = []

    def launch(**overrides):
        outcome = provider.launch(spec_for(new_run_id("h"), **overrides))
        launched.append(outcome.instance.id)
        return outcome.instance

    yield launch
    for iid in launched:
        if provider.describe(iid).state != "terminated":
            provider.terminate(iid)


def test_ssh_endpoint_appears_on_launch_and_vanishes_on_terminate(sandbox, provider, launched):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)  # present as soon as launch returned
    assert endpoint.host == "127.0.0.1" and _port_open(endpoint.port)
    assert endpoint.public_address == inst.public_address
    assert sandbox.resolve(inst).port == endpoint.port
    provider.terminate(inst.id)
    with pytest.raises(SandboxHostUnknown) as caught:
        sandbox.ssh_endpoint(inst.id)
    assert caught.value.exit_code == 2
    assert not _port_open(endpoint.port)


def test_commands_run_in_instance_root_with_instance_id(sandbox, launched):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    with pinned_client(endpoint, inst.key_path) as client:
        status, out, err = run(client, 'pwd; echo "$HOME"; echo "$RC_SANDBOX_INSTANCE_ID"; echo oops >&2; exit 7')
        assert status == 7 and err == "oops\n"
        assert out.splitlines() == [str(endpoint.root_dir), str(endpoint.root_dir), inst.id]
        status, out, _ = run(client, "echo data > made-here.txt && env | grep -c '^AWS_' || true")
        assert (endpoint.root_dir / "made-here.txt").read_text() == "data\n"
        assert out.strip() == "0"  # the daemon's own environment does not leak into the host


def test_stdin_and_large_output_travel_intact(sandbox, launched):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    with pinned_client(endpoint, inst.key_path) as client:
        stdin, out, _ = client.exec_command("wc -c; head -c 3000000 /dev/zero | tr '\\0' x")
        stdin.write(b"y" * 100_000)
        stdin.channel.shutdown_write()
        data = out.read()
        assert out.channel.recv_exit_status() == 0
        assert data.startswith(b"100000\n") and len(data) == len(b"100000\n") + 3_000_000


def test_host_key_is_published_in_console_output(sandbox, launched, ec2, provider):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    text = ec2.get_console_output(InstanceId=inst.id)["Output"]
    assert provider.console_output(inst.id) == text
    block = text.split("-----BEGIN SSH HOST KEY KEYS-----\n", 1)[1].split("-----END SSH HOST KEY KEYS-----")[0]
    published = block.strip().split()[:2]
    assert " ".join(published) == endpoint.host_key
    assert endpoint.fingerprint in text
    with pinned_client(endpoint, inst.key_path, host_key=" ".join(published)) as client:
        assert run(client, "echo pinned")[1] == "pinned\n"


def test_changed_host_key_is_refused_by_a_pinned_client(sandbox, launched, tmp_path):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    other = write_ed25519_key(tmp_path / "other")  # any ed25519 key that is not the host's
    with pytest.raises(paramiko.BadHostKeyException):
        pinned_client(endpoint, inst.key_path, host_key=other)


def test_wrong_key_is_refused(sandbox, launched, tmp_path):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    write_ed25519_key(tmp_path / "stranger")
    with pytest.raises(paramiko.AuthenticationException):
        pinned_client(endpoint, tmp_path / "stranger")


def test_user_data_runs_at_boot(sandbox, launched):
    inst = launched(user_data='#!/bin/sh\necho "booted $RC_SANDBOX_INSTANCE_ID in $(pwd)" > boot.txt\n')
    endpoint = sandbox.ssh_endpoint(inst.id)
    boot = endpoint.root_dir / "boot.txt"
    _wait_for(lambda: boot.exists() and boot.read_text(), what="user-data output")
    assert boot.read_text() == f"booted {inst.id} in {endpoint.root_dir}\n"


def test_shutdown_on_the_host_terminates_the_instance(sandbox, launched, provider):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    with pinned_client(endpoint, inst.key_path) as client:
        status, _, err = run(client, "sudo shutdown -h now")
        assert status == 0 and "power-off requested" in err
    gone = _wait_for(lambda: (d := provider.describe(inst.id)).state == "terminated" and d, what="termination")
    assert gone.state_reason == "Client.InstanceInitiatedShutdown"
    _wait_for(lambda: inst.id not in sandbox.ssh_endpoints(), what="endpoint removal")


@pytest.mark.slow
def test_dead_man_switch_terminates_the_instance_once_heartbeats_stop(sandbox, launched, provider):
    from remote.deadman import deadman_user_data, heartbeat_touch_command

    inst = launched(user_data=deadman_user_data(max_runtime_s=600, heartbeat_timeout_s=2, check_every_s=0.2))
    endpoint = sandbox.ssh_endpoint(inst.id)
    with pinned_client(endpoint, inst.key_path) as client:
        for _ in range(8):  # the console's heartbeat keeps it alive past the timeout
            assert run(client, heartbeat_touch_command())[0] == 0
            time.sleep(0.4)
    assert provider.describe(inst.id).state == "running"
    # Console and watchdog gone: only the switch on the host is left to act.
    gone = _wait_for(lambda: (d := provider.describe(inst.id)).state == "terminated" and d,
                     timeout_s=15, what="dead-man termination")
    assert gone.state_reason == "Client.InstanceInitiatedShutdown"


def test_scheduled_shutdown_can_be_cancelled(sandbox, launched, provider):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    with pinned_client(endpoint, inst.key_path) as client:
        assert run(client, "shutdown -h +1")[0] == 0
        time.sleep(0.5)
        assert run(client, "shutdown -c")[0] == 0
    time.sleep(0.5)
    assert provider.describe(inst.id).state == "running"


def test_spot_interruption_gives_notice_then_terminates(sandbox, launched, provider):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    sandbox.interrupt_spot(inst.id, notice_s=1.0)
    with pinned_client(endpoint, inst.key_path) as client:
        status, out, _ = run(client, 'cat "$RC_SANDBOX_SPOT_NOTICE"')
    assert status == 0 and json.loads(out)["action"] == "terminate"
    gone = _wait_for(lambda: (d := provider.describe(inst.id)).state == "terminated" and d, what="interruption")
    assert gone.state_reason == "Server.SpotInstanceTermination"


def test_processes_die_with_the_instance(sandbox, launched, provider):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    with pinned_client(endpoint, inst.key_path) as client:
        status, out, _ = run(client, "setsid nohup sleep 300 >/dev/null 2>&1 < /dev/null & echo $!")
    pid = int(out.strip())
    assert Path(f"/proc/{pid}").exists()  # a detached command survives the SSH session
    provider.terminate(inst.id)
    _wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), what="process end")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def test_sftp_relative_paths_land_in_the_instance_root(sandbox, launched, tmp_path):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    local = tmp_path / "payload.bin"
    local.write_bytes(b"\x00\x01payload" * 1000)
    with pinned_client(endpoint, inst.key_path) as client:
        sftp = client.open_sftp()
        sftp.mkdir("work")
        sftp.put(str(local), "work/payload.bin")
        assert sftp.normalize(".") == str(endpoint.root_dir)
        sftp.get("work/payload.bin", str(tmp_path / "back.bin"))
        sftp.close()
    assert (endpoint.root_dir / "work" / "payload.bin").read_bytes() == local.read_bytes()
    assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()


def test_ssh_runner_pins_the_console_output_key_and_runs_detached_jobs(sandbox, launched, ec2, tmp_path):
    from remote.ssh import SSHRunner, SSHTarget

    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    published = ec2.get_console_output(InstanceId=inst.id)["Output"]
    target = SSHTarget(inst.id, endpoint.host, endpoint.port, endpoint.user, inst.key_path,
                       tmp_path / "known_hosts", publication=published)
    with SSHRunner(target) as runner:
        assert runner.run("echo $RC_SANDBOX_INSTANCE_ID").output.strip() == inst.id
        runner.run_detached("echo one; sleep 0.2; echo two", "job1")
        lines: list[str] = []
        result = runner.follow_job("job1", lines.append)
    assert result.status.exit_code == 0 and lines == ["one", "two"]


def test_stop_and_start_keep_root_and_host_key_and_do_not_rerun_user_data(sandbox, launched, ec2):
    inst = launched(user_data="#!/bin/sh\necho boot >> boots.txt\n")
    before = sandbox.ssh_endpoint(inst.id)
    _wait_for(lambda: (before.root_dir / "boots.txt").exists(), what="first boot")
    ec2.stop_instances(InstanceIds=[inst.id])
    assert inst.id not in sandbox.ssh_endpoints()
    ec2.start_instances(InstanceIds=[inst.id])
    after = sandbox.ssh_endpoint(inst.id, wait_s=5)
    assert (after.root_dir, after.host_key) == (before.root_dir, before.host_key)
    with pinned_client(after, inst.key_path) as client:
        assert run(client, "cat boots.txt")[1] == "boot\n"


def test_dropped_connection_hangs_up_the_command_like_sshd(sandbox, launched):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    client = pinned_client(endpoint, inst.key_path)
    client.exec_command("echo $$ > sh.pid; sleep 30; echo late > late.txt")
    pid_file = endpoint.root_dir / "sh.pid"
    pid = int(_wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="command start"))
    client.get_transport().sock.close()  # the network goes away, no clean channel close
    client.close()
    _wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), what="hang-up")
    assert not (endpoint.root_dir / "late.txt").exists()


def test_commands_and_transfers_cannot_write_outside_the_instance_root(sandbox, launched, tmp_path):
    inst = launched()
    endpoint = sandbox.ssh_endpoint(inst.id)
    outside = tmp_path / "outside"  # stands in for the operator's /etc
    outside.mkdir()
    local = tmp_path / "payload.txt"
    local.write_text("payload\n")
    with pinned_client(endpoint, inst.key_path) as client:
        status, _, err = run(client, f"echo pwned > {outside}/by-command")
        assert status != 0 and "Permission denied" in err
        status, _, _ = run(client, f"ln -s {outside} escape && echo pwned > escape/by-symlink")
        assert status != 0
        mine = f"mkdir -p ./{outside} && echo mine > inside.txt && cat inside.txt"
        status, out, _ = run(client, mine + " && python3 -c 'import tempfile; tempfile.mkstemp()'")
        assert status == 0 and out == "mine\n"  # the instance's own disk stays writable
        sftp = client.open_sftp()
        sftp.put(str(local), f"{outside}/by-sftp")  # an absolute path is the instance's own
        with pytest.raises(PermissionError):
            sftp.put(str(local), "escape/by-sftp-symlink")
        with pytest.raises(PermissionError):
            sftp.put(str(local), "../../by-sftp-dotdot")
        sftp.close()
    assert list(outside.iterdir()) == []
    assert (endpoint.root_dir / str(outside).lstrip("/") / "by-sftp").read_text() == "payload\n"
    assert not (tmp_path.parent / "by-sftp-dotdot").exists()
