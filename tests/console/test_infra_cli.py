"""`console infra deploy | diff | show | destroy` on the sandbox (moto over HTTP), driven as an
operator drives it, and the template itself: cfn-lint clean and least privilege."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from remote.infra import TEMPLATE, TrainingStack
from remote.sandbox.endpoints import SandboxEndpoints
from tests.e2e_support import CONSOLE, console_env
from tests.remote.sandbox_fixtures import sandbox  # noqa: F401  (the session's daemon)


def test_the_template_is_cfn_lint_clean_and_least_privilege() -> None:
    from cfnlint.api import lint_file

    assert [str(m) for m in lint_file(TEMPLATE)] == []
    resources = json.loads(TEMPLATE.read_text())["Resources"]
    bucket = resources["TrainingBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    role = resources["SageMakerExecutionRole"]["Properties"]
    assert [s["Principal"] for s in role["AssumeRolePolicyDocument"]["Statement"]] == [
        {"Service": "sagemaker.amazonaws.com"}]  # fmt: skip
    assert "ManagedPolicyArns" not in role  # moto drops them: inline and customer-managed policies only
    statements = resources["TrainingPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    star = sorted(a for s in statements if s["Resource"] == "*" for a in s["Action"])
    assert star == ["batch:DescribeComputeEnvironments", "batch:DescribeJobDefinitions", "batch:DescribeJobQueues",
                    "batch:DescribeJobs", "batch:ListJobs", "ecr:GetAuthorizationToken",
                    "sagemaker:ListTrainingJobs"]  # none of these can be scoped to a resource  # fmt: skip
    jobs = next(s for s in statements if s["Sid"] == "OurTrainingJobs")
    assert jobs["Resource"]["Fn::Sub"].endswith(":training-job/train-*")
    passing = next(s for s in statements if s["Action"] == ["iam:PassRole"])
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    # The engine's Batch queue: spot, idle at 0 vCPUs; a spot reclaim is retried, any other exit is final.
    compute = resources["BatchComputeEnvironment"]["Properties"]["ComputeResources"]
    assert (compute["Type"], compute["MinvCpus"], compute["DesiredvCpus"]) == ("SPOT", 0, 0)
    definition = resources["BatchJobDefinition"]["Properties"]
    assert definition["RetryStrategy"]["EvaluateOnExit"] == [{"OnStatusReason": "Host EC2*", "Action": "RETRY"},
                                                             {"OnReason": "*", "Action": "EXIT"}]  # fmt: skip
    assert definition["ContainerProperties"]["Command"] == ["python", "-m", "training.container", "batch-child"]


@pytest.mark.slow
def test_deploy_is_idempotent_prints_the_env_lines_and_destroy_keeps_the_bucket(
    sandbox: SandboxEndpoints,  # noqa: F811 - the session's daemon serves the console too
    tmp_path: Path,
) -> None:
    from remote.providers.aws_client import make_client

    env = console_env(tmp_path / "home", sandbox.state_dir)

    def console(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CONSOLE, "infra", *args], env={**env, **extra}, capture_output=True, text=True,
                              timeout=180)  # fmt: skip

    try:
        missing = console("deploy", TRAINING_USER_NAME="ai-trading-bot")
        assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
        assert "IAM user 'ai-trading-bot' (TRAINING_USER_NAME) does not exist" in missing.stderr
        target = sandbox.aws_target()
        cf, iam = make_client("cloudformation", target), make_client("iam", target)
        assert cf.describe_stacks()["Stacks"] == []  # nothing half-made

        iam.create_user(UserName="ai-trading-bot")
        ec2 = make_client("ec2", target)  # the engine's queue goes in the default VPC, as an operator would put it
        subnets = ",".join(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"][:2])
        group = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
        # The session's sandbox is shared: instances earlier tests launched may still be listed.
        before = _instance_ids(ec2)
        half = console("diff", "--batch-subnets", subnets)
        assert half.returncode == 2 and "needs both subnets and security groups" in half.stderr, half.stderr
        created = console("deploy", "--json", "--batch-subnets", subnets, "--batch-security-groups", group,
                          TRAINING_USER_NAME="ai-trading-bot")  # fmt: skip
        assert created.returncode == 0, created.stderr
        first = json.loads(created.stdout)
        assert first["action"] == "created" and len(first["changes"]) == len(json.loads(TEMPLATE.read_text())["Resources"])
        assert [line.split("=")[0] for line in first["env"]] == [
            "SAGEMAKER_ROLE_ARN", "SAGEMAKER_S3_BUCKET", "AWS_REGION", "SAGEMAKER_DOCKER_IMAGE"]  # fmt: skip
        attached = iam.list_attached_user_policies(UserName="ai-trading-bot")["AttachedPolicies"]
        assert [p["PolicyArn"] for p in attached] == [first["policy_arn"]]
        s3 = make_client("s3", target)
        rules = s3.get_bucket_encryption(Bucket=first["bucket"])["ServerSideEncryptionConfiguration"]["Rules"]
        assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        role = iam.get_role(RoleName=first["role_arn"].rsplit("/", 1)[1])["Role"]
        assert "sagemaker.amazonaws.com" in json.dumps(role["AssumeRolePolicyDocument"])
        assert make_client("ecr", target).describe_repositories()["repositories"][0]["repositoryUri"] == \
            first["image_repository"]  # fmt: skip
        batch = make_client("batch", target)
        queue = batch.describe_job_queues(jobQueues=[first["batch_queue"]])["jobQueues"][0]
        assert queue["state"] == "ENABLED" and first["toml"][1] == 'queue = "retrain-console-engine"'
        environments = batch.describe_compute_environments(computeEnvironments=[first["batch_compute_environment"]])
        resources = environments["computeEnvironments"][0]["computeResources"]
        assert (resources["type"], resources["desiredvCpus"]) == ("SPOT", 0)
        assert queue["computeEnvironmentOrder"][0]["computeEnvironment"] == environments["computeEnvironments"][0]["computeEnvironmentArn"]
        definition = batch.describe_job_definitions(jobDefinitionName=first["batch_job_definition"])["jobDefinitions"]
        rule = definition[0]["retryStrategy"]["evaluateOnExit"][0]  # moto writes the action in lower case
        assert (rule["onStatusReason"], rule["action"].upper()) == ("Host EC2*", "RETRY")
        assert _instance_ids(ec2) - before == set()  # a compute environment idling at 0 vCPUs launches nothing

        # --write-config: the operator's console.toml gets the stack's keys; its other lines stay byte for byte.
        config = tmp_path / "console.toml"
        mine = '# my settings\n\n[backends.sagemaker]\ninstance_type = "ml.m5.large"  # kept\n'
        config.write_text(mine)
        again = console("deploy", "--json", "--write-config", TRAINING_USER_NAME="ai-trading-bot", RC_CONFIG=str(config))
        assert json.loads(again.stdout)["action"] == "unchanged"  # the Batch part is kept
        assert json.loads(again.stdout)["wrote"].endswith(f"to {config}")
        written = config.read_text()
        assert written.startswith("# my settings\n") and written.endswith(mine.split("\n\n", 1)[1] + "\n[backends.batch]\n"
                                                                      + "\n".join(first["toml"][1:]) + "\n")  # fmt: skip
        assert f'sagemaker_role_arn = "{first["role_arn"]}"' in written and f's3_bucket = "{first["bucket"]}"' in written
        assert not list(tmp_path.glob(".console.toml.*"))  # the temporary file was renamed over it
        # diff and a change set: the same stack object `console infra diff|deploy` use, in this
        # process (the CLI around it is the deploy and show above and below).
        assert TrainingStack(target, user="ai-trading-bot").diff() == []
        changed = TrainingStack(target, user="")
        assert changed.diff() == ["~ parameter TrainingUserName: 'ai-trading-bot' -> ''"]
        updated = changed.deploy()  # a change: a change set, executed
        assert (updated.action, updated.changes) == ("updated", ("~ parameter TrainingUserName: 'ai-trading-bot' -> ''",))
        assert changed.diff() == []

        shown = console("show")
        assert shown.returncode == 0 and f"SAGEMAKER_S3_BUCKET={first['bucket']}" in shown.stdout

        gone = console("destroy", "--json")
        assert json.loads(gone.stdout) == {"stack": "retrain-console-training", "deleted": True,
                                           "kept": ["the training bucket", "the image repository"]}  # fmt: skip
        s3.head_bucket(Bucket=first["bucket"])  # kept: it holds the models
        nothing = console("show")
        assert nothing.returncode == 2 and "run `console infra deploy`" in nothing.stderr
    finally:  # the session's sandbox outlives this test: leave no stack in it
        TrainingStack(sandbox.aws_target()).destroy()


def _instance_ids(ec2) -> set[str]:
    return {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}


@pytest.mark.parametrize("status", ["ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED"])
def test_a_deploy_refuses_a_rolled_back_stack_and_says_to_destroy_it(status: str) -> None:
    # In process: moto does not leave a stack in these states cheaply. The CLI maps StackRefused to exit 2.
    from remote.infra import StackRefused

    stack = TrainingStack.__new__(TrainingStack)
    stack.name = "retrain-console-training"
    with pytest.raises(StackRefused, match=f"is {status} .*run `console infra destroy`, then `console infra deploy`"):
        stack._check_deployable({"StackStatus": status})
    assert StackRefused.exit_code == 2
    stack._check_deployable({"StackStatus": "UPDATE_ROLLBACK_COMPLETE"})  # a finished rollback of an update: deployable
