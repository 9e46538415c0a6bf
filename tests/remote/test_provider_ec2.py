"""The EC2 spot provider against the sandbox's moto server, over real HTTP."""

from __future__ import annotations

import secrets
import stat
import time

import pytest

from remote.errors import (
    CredentialsMissing, InstanceNotFound, NoAmiFound, NoCapacity, ProviderError, UnknownInstanceType,
    UnknownRegion,
)
from remote.providers.aws_client import AwsCredentials, AwsTarget
from remote.providers.base import MANAGED_BY_TAG, Provider
from remote.providers.ec2 import Ec2SpotProvider
from tests.remote.sandbox_fixtures import ec2, new_run_id, provider, sandbox, spec_for  # noqa: F401


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


def test_provider_satisfies_protocol(provider):
    assert isinstance(provider, Provider)


def test_prices_come_from_sandbox_table_cheapest_first(provider):
    prices = provider.prices(["g5.xlarge", "g4dn.xlarge"])
    assert {p.source for p in prices} == {"sandbox table"}
    spots = [p.spot_usd_per_hour for p in prices]
    assert spots == sorted(spots)
    cheapest_g5 = min((p for p in prices if p.instance_type == "g5.xlarge"), key=lambda p: p.spot_usd_per_hour)
    assert cheapest_g5.zone == "us-east-1b" and cheapest_g5.spot_usd_per_hour == pytest.approx(0.2968)
    assert cheapest_g5.on_demand_usd_per_hour == pytest.approx(1.006)
    assert prices[0].instance_type == "g4dn.xlarge" and prices[0].spot_usd_per_hour == pytest.approx(0.1578)


def test_launch_picks_cheapest_zone_and_says_why(provider):
    outcome = provider.launch(spec_for(new_run_id()))
    try:
        assert not outcome.reused
        assert outcome.instance.zone == "us-east-1b" and outcome.instance.instance_type == "g5.xlarge"
        assert "cheapest zone" in outcome.reason and "sandbox table" in outcome.reason
        assert "0.2968" in outcome.reason
    finally:
        provider.terminate(outcome.instance.id)


def test_launch_reuses_instance_tagged_with_run_id(provider, sandbox, tmp_path):
    run_id = new_run_id()
    first = provider.launch(spec_for(run_id))
    try:
        # A second console process (e.g. after kill -9 and resume) with a fresh provider object.
        again = sandbox.ec2_provider(tmp_path / "keys").launch(spec_for(run_id, attempt=2))
        assert again.reused and again.instance.id == first.instance.id
        assert "reusing" in again.reason
        assert [i.id for i in provider.list_managed() if i.run_id == run_id] == [first.instance.id]
    finally:
        provider.terminate(first.instance.id)


def test_launch_after_previous_instance_terminated_starts_a_new_one(provider):
    run_id = new_run_id()
    first = provider.launch(spec_for(run_id))
    provider.terminate(first.instance.id)
    second = provider.launch(spec_for(run_id))
    try:
        assert not second.reused and second.instance.id != first.instance.id
    finally:
        provider.terminate(second.instance.id)


def test_launch_sets_spot_tags_key_and_operator_only_ssh(provider, ec2):
    run_id = new_run_id()
    outcome = provider.launch(spec_for(run_id, max_runtime_minutes=90, budget_usd=3.5, owner="ana",
                                       ssh_cidr="203.0.113.7/32"))
    inst = outcome.instance
    try:
        assert inst.lifecycle == "spot"
        assert inst.tags[MANAGED_BY_TAG] == "retrain-console"
        assert inst.tags["run-id"] == run_id and inst.tags["owner"] == "ana"
        assert inst.tags["max-runtime-minutes"] == "90" and inst.tags["budget-usd"] == "3.50"
        assert inst.tags["created-at"].endswith("Z") and inst.tags["step-attempt"] == "1"
        assert inst.key_path is not None and stat.S_IMODE(inst.key_path.stat().st_mode) == 0o600
        behaviour = ec2.describe_instance_attribute(InstanceId=inst.id, Attribute="instanceInitiatedShutdownBehavior")
        assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
        raw = ec2.describe_instances(InstanceIds=[inst.id])["Reservations"][0]["Instances"][0]
        image = ec2.describe_images(ImageIds=[raw["ImageId"]])["Images"][0]
        assert image["Name"].startswith("Deep Learning OSS Nvidia Driver AMI GPU PyTorch")
        (group,) = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in raw["SecurityGroups"]])["SecurityGroups"]
        ranges = [(p["FromPort"], r["CidrIp"]) for p in group["IpPermissions"] for r in p["IpRanges"]]
        assert ranges == [(22, "203.0.113.7/32")]
    finally:
        provider.terminate(inst.id)


def test_capacity_fallback_tries_next_zone_then_alternative_type_and_reports(provider, sandbox):
    sandbox.set_capacity("g5.xlarge", "*", available=False)
    sandbox.set_capacity("g4dn.xlarge", "us-east-1a", available=False)
    try:
        outcome = provider.launch(spec_for(new_run_id()))
    finally:
        sandbox.set_capacity("g5.xlarge", "*", available=True)
        sandbox.set_capacity("g4dn.xlarge", "us-east-1a", available=True)
    try:
        tried = [(a.instance_type, a.zone, a.outcome) for a in outcome.attempts]
        assert [t[:2] for t in tried[:5]] == [("g5.xlarge", z) for z in
                                             ("us-east-1b", "us-east-1a", "us-east-1d", "us-east-1c", "us-east-1f")]
        assert all(t[2] == "InsufficientInstanceCapacity" for t in tried[:6])
        assert tried[5][:2] == ("g4dn.xlarge", "us-east-1a")
        assert tried[6] == ("g4dn.xlarge", "us-east-1c", "launched")
        assert outcome.instance.instance_type == "g4dn.xlarge" and outcome.instance.zone == "us-east-1c"
        assert "g5.xlarge in us-east-1b: InsufficientInstanceCapacity" in outcome.reason
    finally:
        provider.terminate(outcome.instance.id)


def test_no_capacity_anywhere_is_one_line_and_leaves_nothing_running(provider, sandbox):
    run_id = new_run_id()
    sandbox.set_capacity("g5.xlarge", "*", available=False)
    sandbox.set_capacity("g4dn.xlarge", "*", available=False)
    try:
        with pytest.raises(NoCapacity) as caught:
            provider.launch(spec_for(run_id))
    finally:
        sandbox.set_capacity("g5.xlarge", "*", available=True)
        sandbox.set_capacity("g4dn.xlarge", "*", available=True)
    message = _one_line(caught.value)
    assert "tried 10" in message and "g4dn.xlarge in us-east-1f" in message
    assert len(caught.value.tried) == 10 and caught.value.exit_code == 1
    assert not [i for i in provider.list_managed() if i.run_id == run_id]


def test_max_price_below_spot_skips_zone_and_reports_it(provider):
    with pytest.raises(NoCapacity) as caught:
        provider.launch(spec_for(new_run_id(), alternative_types=(), max_price_usd_per_hour=0.10))
    assert "above max $0.1000/h" in _one_line(caught.value)


def test_terminate_confirms_terminated_state(provider, ec2):
    outcome = provider.launch(spec_for(new_run_id()))
    done = provider.terminate(outcome.instance.id)
    assert done.state == "terminated"
    raw = ec2.describe_instances(InstanceIds=[done.id])["Reservations"][0]["Instances"][0]
    assert raw["State"]["Name"] == "terminated"
    assert done.id not in [i.id for i in provider.list_managed()]
    assert provider.terminate(done.id).state == "terminated"  # idempotent


def test_list_managed_ignores_instances_without_our_tag(provider, ec2):
    raw = ec2.run_instances(ImageId="ami-0d1a5a7d0b0c0e0f1", InstanceType="t3.micro", MinCount=1, MaxCount=1)
    foreign = raw["Instances"][0]["InstanceId"]
    try:
        assert foreign not in [i.id for i in provider.list_managed()]
    finally:
        ec2.terminate_instances(InstanceIds=[foreign])


def test_unknown_instance_type_is_bad_input(provider):
    with pytest.raises(UnknownInstanceType) as caught:
        provider.launch(spec_for(new_run_id(), instance_type="g9.mega", alternative_types=()))
    assert caught.value.exit_code == 2 and "g9.mega" in _one_line(caught.value)


def test_describe_unknown_instance_is_not_found(provider):
    with pytest.raises(InstanceNotFound) as caught:
        provider.describe("i-0123456789abcdef0")
    assert caught.value.exit_code == 2
    _one_line(caught.value)


def test_no_ami_matching_pattern_is_bad_input(provider):
    with pytest.raises(NoAmiFound) as caught:
        provider.launch(spec_for(new_run_id(), ami_name_pattern="No Such Image *"))
    assert caught.value.exit_code == 2 and "No Such Image" in _one_line(caught.value)


def test_unknown_region_is_refused_before_any_call(tmp_path):
    with pytest.raises(UnknownRegion) as caught:
        Ec2SpotProvider(AwsTarget("mars-north-1"), key_dir=tmp_path)
    assert caught.value.exit_code == 2 and "mars-north-1" in _one_line(caught.value)


def test_missing_credentials_is_one_clear_line(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    no_creds = Ec2SpotProvider(AwsTarget("us-east-1", sandbox.moto_url), key_dir=tmp_path)
    with pytest.raises(CredentialsMissing) as caught:
        no_creds.list_managed()
    assert caught.value.exit_code == 2 and "credentials" in _one_line(caught.value)


def test_unreachable_endpoint_is_one_clear_line(tmp_path):
    started = time.monotonic()
    creds = AwsCredentials("AK" + secrets.token_hex(8).upper(), secrets.token_urlsafe(24))
    dead = Ec2SpotProvider(AwsTarget("us-east-1", "http://127.0.0.1:9", creds, max_attempts=1), key_dir=tmp_path)
    with pytest.raises(ProviderError) as caught:
        dead.list_managed()
    assert "cannot reach EC2" in _one_line(caught.value) and "sandbox up" in str(caught.value)
    assert caught.value.exit_code == 1
    assert time.monotonic() - started < 10
