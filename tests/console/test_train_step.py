"""The console side of the local-training guard: the train step never dispatches here."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.checklist.engine import Engine
from console.checklist.spec import load_checklist
from console.settings import load_settings
from console.state import StateStore
from console.steps.train import is_this_machine

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
