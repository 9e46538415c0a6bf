"""The train step's console side: the local-training guard (it never dispatches here), the
checkpoints it keeps off the host, and how it tells that the host is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.checklist.engine import Engine
from console.steps import load_checklist
from console.settings import load_settings
from console.state import StateStore
from console.steps.train import is_this_machine
from tests.remote.sandbox_fixtures import new_run_id, provider, sandbox, spec_for  # noqa: F401

CHECKLIST = """
[checklist]
name = "train-only"
[params]
symbols = ["ETH-USD"]
[defaults]
retries = 0
[[steps]]
name = "launch"
[[steps]]
name = "sync"
[[steps]]
name = "train"
"""


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_addresses_are_this_machine(host: str) -> None:
    assert is_this_machine(host)


def test_a_documentation_address_is_not_this_machine() -> None:
    assert not is_this_machine("192.0.2.10")  # TEST-NET-1: never assigned to a real host


def _run_with_instance_at(tmp_path: Path, profile: str, host: str, lease: bool = True):
    settings = load_settings(flags={"state_dir": str(tmp_path / "state"), "profile": profile}).settings
    store = StateStore.open(settings.state_dir)
    path = tmp_path / "c.toml"
    path.write_text(CHECKLIST)
    spec = load_checklist(str(path), profile=profile)
    engine = Engine(settings, store)
    run_id = engine.create_run(spec)
    # The launch and sync steps already happened: their outputs point at the host.
    store.update_step(run_id, "launch", "succeeded", message="launched", outputs={
        "instance_id": "i-0123456789abcdef0", "host": host, "port": 22, "user": "ubuntu", "key_path": "/nonexistent"})
    sync_outputs = {"lease_path": "rc/code/.rc-lease.json", "host_kind": "aws"} if lease else {}
    store.update_step(run_id, "sync", "succeeded", message="synced", outputs=sync_outputs)
    outcome = engine.drive(run_id, spec)
    return outcome, store.get_step(run_id, "train")


def test_train_step_refuses_to_dispatch_to_this_machine_off_the_sandbox(tmp_path: Path) -> None:
    outcome, step = _run_with_instance_at(tmp_path, "aws", "127.0.0.1")
    assert outcome.status == "blocked" and outcome.exit_code == 3
    assert step.state == "blocked"
    assert step.summary.startswith("refusing to train locally: 127.0.0.1 is this machine")


def test_train_step_refuses_an_instance_without_a_lease(tmp_path: Path) -> None:
    outcome, step = _run_with_instance_at(tmp_path, "aws", "192.0.2.10", lease=False)
    assert outcome.exit_code == 3
    assert "refusing to train locally: the instance holds no lease" in step.summary


# --- checkpoints off the host, and a lost host noticed (real sandbox hosts) ----------------


@pytest.fixture
def hosts(sandbox, provider, tmp_path):
    """Runners on fresh sandbox instances (``hosts(n)``); every instance terminated afterwards."""
    from remote.ssh import SSHRunner, SSHTarget

    launched, runners = [], []

    def make(n: int):
        for _ in range(n):
            inst = provider.launch(spec_for(new_run_id("ckpt"))).instance
            launched.append(inst.id)
            endpoint = sandbox.ssh_endpoint(inst.id, wait_s=5.0)
            target = SSHTarget(inst.id, endpoint.host, endpoint.port, endpoint.user, inst.key_path,
                               tmp_path / "known_hosts", publication=f"{endpoint.host_key}\n")
            runner = SSHRunner(target)
            runner.connect()
            runners.append(runner)
        return runners[-n:]

    yield make
    for runner in runners:
        runner.close()
    for iid in launched:
        if provider.describe(iid).state != "terminated":
            provider.terminate(iid)


def _put_checkpoint(runner, tmp_path: Path, epoch: int, body: bytes, *, record_of: bytes | None = None) -> None:
    """A trainer's epoch on the host: ``last.pt``, then ``last.json`` describing ``record_of`` (default: it)."""
    import hashlib
    import json

    folder = "rc/artifacts/checkpoints/ETH-USD"
    local = tmp_path / f"epoch-{epoch}.pt"
    local.write_bytes(body)
    runner.run(["mkdir", "-p", folder])
    runner.put(local, f"{folder}/last.pt")
    described = body if record_of is None else record_of
    runner.write_text(f"{folder}/last.json", json.dumps(
        {"file": "last.pt", "epoch": epoch, "size": len(described), "sha256": hashlib.sha256(described).hexdigest()}))


@pytest.mark.slow
def test_checkpoints_leave_the_host_verified_and_come_back_onto_a_replacement(hosts, tmp_path: Path) -> None:
    import hashlib
    import json
    import logging
    import os

    from remote.backends.ssh.shelf import CheckpointShelf
    from remote.errors import ChecksumMismatch
    from remote.storage import LocalArtifactStore

    lost, replacement = hosts(2)
    store = LocalArtifactStore(tmp_path / "store")
    shelf = CheckpointShelf(store, "run-1", tmp_path / "staging", logging.getLogger("test.shelf"))
    first = os.urandom(40_000)
    _put_checkpoint(lost, tmp_path, 1, first)
    assert shelf.save_from_host(lost, "rc/artifacts", "ETH-USD") == 1
    pointer = json.loads((tmp_path / "store" / "checkpoints/run-1/ETH-USD/last.json").read_bytes())
    assert pointer == {"epoch": 1, "key": "checkpoints/run-1/ETH-USD/epoch-0001.pt",
                       "sha256": hashlib.sha256(first).hexdigest(), "size": len(first)}
    assert (tmp_path / "store" / pointer["key"]).read_bytes() == first

    # Epoch 2's file replaced under a record that does not describe it (caught mid-write):
    # the copy is refused and the store keeps epoch 1, whole.
    _put_checkpoint(lost, tmp_path, 2, os.urandom(40_000), record_of=b"something else")
    assert shelf.save_from_host(lost, "rc/artifacts", "ETH-USD") == 1
    assert json.loads((tmp_path / "store" / "checkpoints/run-1/ETH-USD/last.json").read_bytes())["epoch"] == 1
    assert not [p for p in (tmp_path / "staging").iterdir()]

    # Onto the replacement, checked there; a second shelf (a resumed console) reads the same.
    again = CheckpointShelf(store, "run-1", tmp_path / "staging2", logging.getLogger("test.shelf"))
    assert again.restore_to_host(replacement, "rc/artifacts", ["ETH-USD", "BTC-USD"]) == {"ETH-USD": 1}
    on_host = replacement.run(["sha256sum", "rc/artifacts/checkpoints/ETH-USD/last.pt"]).output.split()[0]
    assert on_host == hashlib.sha256(first).hexdigest()
    record = json.loads(replacement.read_text("rc/artifacts/checkpoints/ETH-USD/last.json"))
    assert record["epoch"] == 1 and record["sha256"] == on_host

    # A damaged stored checkpoint is refused, never resumed from.
    damaged = bytearray(first)
    damaged[100] ^= 0xFF
    (tmp_path / "store" / pointer["key"]).write_bytes(bytes(damaged))
    replacement.run(["rm", "-rf", "rc/artifacts/checkpoints"])
    with pytest.raises(ChecksumMismatch) as refused:
        again.restore_to_host(replacement, "rc/artifacts", ["ETH-USD"])
    assert "refusing to resume ETH-USD" in str(refused.value) and "\n" not in str(refused.value)
    assert replacement.read_text("rc/artifacts/checkpoints/ETH-USD/last.pt") is None


@pytest.mark.slow
def test_the_provider_says_when_an_instance_is_lost(provider, tmp_path: Path) -> None:
    from console.instances import Instances
    from console.resources import Resources
    from console.settings import Settings

    instances = Instances(Resources(Settings(state_dir=tmp_path)), StateStore.open(tmp_path), provider=provider)
    inst = provider.launch(spec_for(new_run_id("lost"))).instance
    try:
        assert instances.lost_reason(inst.id) is None
    finally:
        provider.terminate(inst.id)
    assert instances.lost_reason(inst.id).startswith("it is terminated")
