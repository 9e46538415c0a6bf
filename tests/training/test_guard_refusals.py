"""The local-training guard refuses every host the console did not lease, and says why."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from training.errors import LocalTrainingRefused
from training.guard import HostIdentity, Lease, check_lease, read_lease, ssh_fingerprint, write_lease

REPO = Path(__file__).resolve().parents[2]


def _identity(tmp_path: Path, *, environ=None, imds="http://127.0.0.1:9", cuda=False, machine_id=None) -> HostIdentity:
    mid = tmp_path / "machine-id"
    if machine_id is not None:
        mid.write_text(machine_id + "\n")
    return HostIdentity(
        environ=environ or {},
        imds_endpoint=imds,
        host_key_dir=tmp_path / "ssh",
        machine_id_paths=(mid,),
        cuda_available=lambda: cuda,
    )


def _host_key(tmp_path: Path) -> str:
    """A host public key in the fake /etc/ssh; returns its fingerprint."""
    (tmp_path / "ssh").mkdir(exist_ok=True)
    blob = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + secrets.token_bytes(36)).decode()
    line = f"ssh-ed25519 {blob} root@host\n"
    (tmp_path / "ssh" / "ssh_host_ed25519_key.pub").write_text(line)
    return ssh_fingerprint(line)


def _lease(tmp_path: Path, **overrides) -> Path:
    fields = dict(run_id="run-1", host_kind="sandbox", instance_id="i-0sandbox", host_key_fingerprint="SHA256:abc",
                  operator_machine_id="operator-machine")  # fmt: skip
    fields.update(overrides)
    return write_lease(tmp_path / ".rc-lease.json", Lease.issue(**fields))


def _refusal(excinfo) -> str:
    message = str(excinfo.value)
    assert message.startswith("refusing to train locally:")
    assert "\n" not in message
    assert excinfo.value.exit_code == 3
    return message


@pytest.fixture()
def imds_server():
    """A real IMDSv2 endpoint on 127.0.0.1 answering with instance id i-0aws (token required)."""
    token = secrets.token_hex(8)

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):
            if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self._send(200, token)
            else:
                self._send(403, "")

        def do_GET(self):
            if self.headers.get("X-aws-ec2-metadata-token") != token:
                self._send(401, "")
            elif self.path == "/latest/meta-data/instance-id":
                self._send(200, "i-0aws")
            else:
                self._send(404, "")

        def _send(self, code, body):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_missing_lease_refuses(tmp_path):
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(tmp_path / "nope.json", identity=_identity(tmp_path))
    assert "no lease file" in _refusal(excinfo)


def test_malformed_lease_refuses(tmp_path):
    path = tmp_path / ".rc-lease.json"
    path.write_text(json.dumps({"run_id": "x"}))
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(path, identity=_identity(tmp_path))
    assert "malformed" in _refusal(excinfo)


def test_expired_lease_refuses(tmp_path):
    path = _lease(tmp_path, valid_for=timedelta(minutes=5), now=datetime.now(timezone.utc) - timedelta(hours=1))
    identity = _identity(tmp_path, environ={"RC_SANDBOX_INSTANCE_ID": "i-0sandbox"})
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(path, identity=identity)
    assert "expired" in _refusal(excinfo)


def test_lease_round_trips_through_its_file(tmp_path):
    path = _lease(tmp_path)
    lease = read_lease(path)
    assert (lease.run_id, lease.host_kind, lease.instance_id) == ("run-1", "sandbox", "i-0sandbox")
    assert set(json.loads(path.read_text())) == {
        "version", "run_id", "host_kind", "instance_id", "host_key_fingerprint",
        "operator_machine_id", "issued_at", "expires_at",
    }  # fmt: skip


def test_sandbox_lease_refuses_outside_a_sandbox_host(tmp_path):
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(_lease(tmp_path), identity=_identity(tmp_path))
    assert "RC_SANDBOX_INSTANCE_ID is not set" in _refusal(excinfo)


def test_sandbox_lease_refuses_another_sandbox_instance(tmp_path):
    identity = _identity(tmp_path, environ={"RC_SANDBOX_INSTANCE_ID": "i-0other"})
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(_lease(tmp_path), identity=identity)
    assert "i-0other" in _refusal(excinfo)


def test_sandbox_lease_refuses_a_different_pinned_host_key(tmp_path):
    env = {"RC_SANDBOX_INSTANCE_ID": "i-0sandbox", "RC_SANDBOX_HOST_KEY_FINGERPRINT": "SHA256:zzz"}
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(_lease(tmp_path), identity=_identity(tmp_path, environ=env))
    assert "host key" in _refusal(excinfo)


def test_sandbox_lease_accepts_its_instance_without_cuda(tmp_path):
    env = {"RC_SANDBOX_INSTANCE_ID": "i-0sandbox", "RC_SANDBOX_HOST_KEY_FINGERPRINT": "SHA256:abc"}
    lease = check_lease(_lease(tmp_path), identity=_identity(tmp_path, environ=env, cuda=False))
    assert lease.instance_id == "i-0sandbox"


def test_aws_lease_refuses_where_no_instance_metadata_answers(tmp_path):
    path = _lease(tmp_path, host_kind="aws", instance_id="i-0aws")
    # Port 9 (discard) on loopback: nothing listens, so this is "not on EC2".
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(path, identity=_identity(tmp_path, imds="http://127.0.0.1:9", cuda=True))
    assert "no EC2 instance metadata" in _refusal(excinfo)


def test_aws_lease_refuses_another_instance(tmp_path, imds_server):
    path = _lease(tmp_path, host_kind="aws", instance_id="i-0someoneelse")
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(path, identity=_identity(tmp_path, imds=imds_server, cuda=True))
    assert "this is EC2 instance i-0aws" in _refusal(excinfo)


def test_aws_lease_refuses_an_unpinned_host_key(tmp_path, imds_server):
    _host_key(tmp_path)
    path = _lease(tmp_path, host_kind="aws", instance_id="i-0aws", host_key_fingerprint="SHA256:notthisone")
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(path, identity=_identity(tmp_path, imds=imds_server, cuda=True))
    assert "SSH host keys" in _refusal(excinfo)


def test_aws_lease_refuses_without_cuda(tmp_path, imds_server):
    fingerprint = _host_key(tmp_path)
    path = _lease(tmp_path, host_kind="aws", instance_id="i-0aws", host_key_fingerprint=fingerprint)
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(path, identity=_identity(tmp_path, imds=imds_server, cuda=False))
    assert "CUDA is not available" in _refusal(excinfo)


def test_aws_lease_accepts_its_instance_with_its_host_key_and_cuda(tmp_path, imds_server):
    fingerprint = _host_key(tmp_path)
    path = _lease(tmp_path, host_kind="aws", instance_id="i-0aws", host_key_fingerprint=fingerprint)
    assert check_lease(path, identity=_identity(tmp_path, imds=imds_server, cuda=True)).run_id == "run-1"


def test_static_lease_refuses_the_operators_own_machine(tmp_path):
    fingerprint = _host_key(tmp_path)
    path = _lease(tmp_path, host_kind="static", instance_id="m-1", operator_machine_id="m-1",
                  host_key_fingerprint=fingerprint)  # fmt: skip
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(path, identity=_identity(tmp_path, machine_id="m-1", cuda=True))
    assert "operator's own machine" in _refusal(excinfo)


def test_static_lease_refuses_a_host_it_does_not_name(tmp_path):
    path = _lease(tmp_path, host_kind="static", instance_id="m-gpu", operator_machine_id="m-op")
    with pytest.raises(LocalTrainingRefused) as excinfo:
        check_lease(path, identity=_identity(tmp_path, machine_id="m-else", cuda=True))
    assert "not the leased host" in _refusal(excinfo)


def test_fingerprint_matches_ssh_keygen(tmp_path):
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    listed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"], check=True,
                            capture_output=True, text=True).stdout.split()[1]  # fmt: skip
    assert ssh_fingerprint((tmp_path / "k.pub").read_text()) == listed


def _clean_env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
    return {**keep, "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_training_directly_on_this_machine_exits_3(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "training.train", "--symbol", "BTC-USD"],
        cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3
    assert proc.stderr.strip().startswith("refusing to train locally: no lease file")
    event = json.loads(proc.stdout.strip().splitlines()[-1])
    assert event["event"] == "error" and event["exit_code"] == 3


@pytest.mark.slow
def test_training_under_a_lease_naming_this_machine_as_operator_exits_3(tmp_path):
    this_machine = Path("/etc/machine-id").read_text().strip() if Path("/etc/machine-id").exists() else "none"
    _lease(tmp_path, host_kind="static", instance_id=this_machine, operator_machine_id=this_machine)
    proc = subprocess.run(
        [sys.executable, "-m", "training.train", "--symbol", "BTC-USD", "--lease", str(tmp_path / ".rc-lease.json")],
        cwd=tmp_path, env=_clean_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 3
    assert proc.stderr.strip().startswith("refusing to train locally:")


def test_static_lease_accepts_the_leased_gpu_host(tmp_path):
    fingerprint = _host_key(tmp_path)
    path = _lease(tmp_path, host_kind="static", instance_id="m-gpu", operator_machine_id="m-op",
                  host_key_fingerprint=fingerprint)  # fmt: skip
    assert check_lease(path, identity=_identity(tmp_path, machine_id="m-gpu", cuda=True)).instance_id == "m-gpu"
