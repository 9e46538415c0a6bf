"""The sandbox's EC2 state reasons: a power-off's reason is there from the instant its state is.

moto (hosted in-process by the sandbox daemon) writes a stop's state before its reason, and
always says "User initiated"; the fleet arms the real reason on the instance first. Driven on
moto's own in-process backend, the one the daemon serves, with the state changed by hand
half-way, as another thread would see it."""

from __future__ import annotations

import boto3
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

from remote.sandbox.fleet import OS_SHUTDOWN, SPOT_TERMINATION, _arm_state_reason

REGION = "us-east-1"


def _instance():
    ec2 = boto3.client("ec2", region_name=REGION, aws_access_key_id="testing-" + "id",
                       aws_secret_access_key="testing-" + "secret")  # fmt: skip
    image = ec2.describe_images()["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    return ec2_backends[DEFAULT_ACCOUNT_ID][REGION].get_instance(iid)


@mock_aws
def test_the_armed_reason_shows_before_the_state_leaves_running() -> None:
    instance = _instance()
    _arm_state_reason(REGION, instance.id, *SPOT_TERMINATION)
    # moto serializes StateReason before State: a describe may read the reason now and the state
    # after the power-off, so the reason must already be the armed one.
    assert instance.state_reason.code == SPOT_TERMINATION[0]
    instance._state.name = "shutting-down"  # what a describe on another thread may catch mid-call
    assert instance.state_reason.code == SPOT_TERMINATION[0]
    instance.terminate()
    assert (instance.state, instance.state_reason.code) == ("terminated", SPOT_TERMINATION[0])


def test_moto_writes_an_instances_reason_before_its_state() -> None:
    # Why the reason is armed early: the order botocore's Instance shape gives the serializer.
    import botocore.session

    members = list(botocore.session.get_session().get_service_model("ec2").shape_for("Instance").members)
    assert members.index("StateReason") < members.index("State")


@mock_aws
def test_an_armed_reason_is_for_one_power_off_only() -> None:
    instance = _instance()
    _arm_state_reason(REGION, instance.id, *OS_SHUTDOWN)
    instance.stop()
    assert instance.state_reason.code == OS_SHUTDOWN[0]
    instance.start()
    assert not instance.state_reason.code
    instance.stop()  # the operator's own stop, later: moto's "User initiated" again
    assert instance.state_reason.code == "Client.UserInitiatedShutdown"


@mock_aws
def test_a_power_off_that_did_not_happen_leaves_no_reason_behind() -> None:
    instance = _instance()
    disarm = _arm_state_reason(REGION, instance.id, *SPOT_TERMINATION)
    disarm()  # what the fleet does when the stop or terminate call fails
    assert (instance.state, instance.state_reason.code) == ("running", "")
    instance.stop()  # a later stop is the user's own
    assert instance.state_reason.code == "Client.UserInitiatedShutdown"
