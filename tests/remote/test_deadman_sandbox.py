"""The dead-man switch on a sandbox host: with no console and no watchdog, the instance ends itself."""

from __future__ import annotations

import time

import pytest

from remote.deadman import deadman_user_data
from tests.remote.sandbox_fixtures import new_run_id, provider, sandbox, spec_for  # noqa: F401


def _wait_terminated(provider, instance_id: str, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    inst = provider.describe(instance_id)
    while time.monotonic() < deadline and inst.state != "terminated":
        time.sleep(0.2)
        inst = provider.describe(instance_id)
    return inst


@pytest.mark.slow
def test_stale_heartbeat_terminates_the_instance_with_console_and_watchdog_gone(provider):
    user_data = deadman_user_data(max_runtime_s=600, heartbeat_timeout_s=2, check_every_s=0.2)
    launched = provider.launch(spec_for(new_run_id("deadman"), instance_type="g4dn.xlarge", user_data=user_data))
    started = time.monotonic()
    inst = _wait_terminated(provider, launched.instance.id, timeout_s=30)
    assert inst.state == "terminated"
    assert inst.state_reason == "Client.InstanceInitiatedShutdown"
    assert 1.0 <= time.monotonic() - started <= 30


@pytest.mark.slow
def test_max_runtime_terminates_even_with_fresh_heartbeats(provider, sandbox):
    user_data = deadman_user_data(max_runtime_s=3, heartbeat_timeout_s=600, check_every_s=0.2)
    launched = provider.launch(spec_for(new_run_id("deadman"), instance_type="g4dn.xlarge", user_data=user_data))
    inst = _wait_terminated(provider, launched.instance.id, timeout_s=30)
    assert inst.state == "terminated"
    assert inst.state_reason == "Client.InstanceInitiatedShutdown"
