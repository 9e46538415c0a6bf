"""Static hosts from the config behave as a Provider: leases instead of launch/terminate."""

from __future__ import annotations

from pathlib import Path

import pytest

from remote.errors import InstanceNotFound, NoCapacity
from remote.providers.base import LaunchSpec, Provider
from remote.providers.static import StaticHost, StaticHostProvider


def _spec(run_id: str) -> LaunchSpec:
    return LaunchSpec(run_id=run_id, owner="ana", ssh_cidr="127.0.0.1/32")


@pytest.fixture
def hosts(tmp_path: Path) -> StaticHostProvider:
    return StaticHostProvider([
        StaticHost("box1", "10.0.0.5", port=2222, user="gpu", key_path=tmp_path / "k1", label="rtx4090"),
        StaticHost("box2", "gpu2.lan"),
    ], lease_dir=tmp_path / "leases")


def test_static_provider_satisfies_protocol(hosts):
    assert isinstance(hosts, Provider)


def test_launch_leases_a_free_host_and_reuses_it_for_the_same_run(hosts, tmp_path):
    first = hosts.launch(_spec("run-a"))
    assert not first.reused and first.instance.id == "static-box1"
    inst = first.instance
    assert (inst.public_address, inst.port, inst.ssh_user, inst.key_path) == ("10.0.0.5", 2222, "gpu", tmp_path / "k1")
    assert inst.lifecycle == "static" and inst.run_id == "run-a"
    again = hosts.launch(_spec("run-a"))
    assert again.reused and again.instance.id == "static-box1"
    other = hosts.launch(_spec("run-b"))
    assert other.instance.id == "static-box2"
    assert {i.id for i in hosts.list_managed()} == {"static-box1", "static-box2"}


def test_no_free_host_is_no_capacity(hosts):
    hosts.launch(_spec("run-a"))
    hosts.launch(_spec("run-b"))
    with pytest.raises(NoCapacity) as caught:
        hosts.launch(_spec("run-c"))
    assert "\n" not in str(caught.value) and "leased" in str(caught.value)


def test_terminate_releases_the_lease_but_not_the_machine(hosts):
    inst = hosts.launch(_spec("run-a")).instance
    released = hosts.terminate(inst.id)
    assert released.state == "available" and released.run_id is None
    assert hosts.list_managed() == []
    assert hosts.launch(_spec("run-b")).instance.id == "static-box1"


def test_unknown_host_is_not_found(hosts):
    with pytest.raises(InstanceNotFound):
        hosts.describe("static-nope")


@pytest.mark.parametrize("bad", [dict(name="a b", address="x"), dict(name="ok", address="x;rm -rf /"),
                                 dict(name="ok", address="x", port=0)])
def test_config_with_shell_metacharacters_or_bad_port_is_refused(bad):
    with pytest.raises(ValueError):
        StaticHost(**bad)
