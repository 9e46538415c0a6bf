"""Infrastructure as code: the training stack's CloudFormation template and its deploy.

``training-stack.json`` (kept in the repo, linted with cfn-lint in the tests) holds the
training bucket (encrypted, public access blocked, versioned), the SageMaker execution role
(trusting sagemaker.amazonaws.com), a least-privilege customer-managed policy attached to
``TRAINING_USER_NAME`` (that bucket only; training jobs named ``train-*`` only; passing the
role to SageMaker only; the image repository; the training logs; submitting to, following and
stopping the engine's Batch jobs) and the ECR repository of the training image; and, for the
engine's array jobs (`remote.backends.batch`), a spot managed compute environment that idles
at 0 vCPUs (its own VPC: two public subnets, outbound-only security group; the Batch service
role, the instances' role and profile, the children's role on the bucket), its job queue and
the child's job definition (``retryStrategy``: a spot reclaim, ``Host EC2*``, is retried, any
other exit is final). The backend finds that queue by name and creates nothing then. The
Batch part needs the subnets (and security groups) the instances start in, e.g. the default
VPC's (``BatchSubnetIds``); without them the stack has no Batch resources. A deploy that does
not name them keeps what the stack has (a plain redeploy never removes the queue).
`TrainingStack` deploys it:

    deploy()    no stack: create it; a stack whose template and parameters are what the repo
                says: nothing done; else a change set, executed. A stack in a rolled-back or
                failed state is refused with what to do.
    diff()      what a deploy would change, resource by resource ([] when nothing)
    show()      the stack's state and outputs (`StackOutputs.env_lines`: the seed's .env lines)
    destroy()   the stack deleted; the bucket and the repository are retained (they hold
                models and images), and said so

The same calls go to AWS or to the sandbox's moto (which drops ``ManagedPolicyArns`` on roles
and honours only BucketName, BucketEncryption and Tags on buckets: hence inline and
customer-managed policies, and versioning and the public access block checked on the template).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote.errors import ProviderError, RemoteError

TEMPLATE = Path(__file__).with_name("training-stack.json")
STACK_NAME = "retrain-console-training"
DEFAULT_PREFIX = "retrain-console"
REFUSED_STATES = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED", "CREATE_FAILED")
RETAINED = ("the training bucket", "the image repository")


class StackRefused(RemoteError):
    """The stack is in a state a deploy cannot start from (exit 2: the operator acts first)."""

    exit_code = 2


@dataclass(frozen=True)
class StackOutputs:
    role_arn: str
    bucket: str
    policy_arn: str
    image_repository: str
    region: str
    batch_queue: str = ""
    batch_compute_environment: str = ""
    batch_job_definition: str = ""

    def batch_lines(self) -> list[str]:
        """The ``console.toml`` lines that point the engine's ``batch`` backend at the stack's queue."""
        if not self.batch_queue:
            return []
        return [
            "[backends.batch]",
            f'queue = "{self.batch_queue}"',
            f'compute_environment = "{self.batch_compute_environment}"',
            f'job_definition = "{self.batch_job_definition}"',
            f'bucket = "{self.bucket}"',
        ]

    def env_lines(self) -> list[str]:
        """The seed's ``.env`` lines."""
        return [
            f"SAGEMAKER_ROLE_ARN={self.role_arn}",
            f"SAGEMAKER_S3_BUCKET={self.bucket}",
            f"AWS_REGION={self.region}",
            f"SAGEMAKER_DOCKER_IMAGE={self.image_repository}:latest",
        ]


@dataclass(frozen=True)
class Deployed:
    action: str
    """``created``, ``updated`` or ``unchanged``."""
    changes: tuple[str, ...]
    outputs: StackOutputs


class TrainingStack:
    """The training stack in one account and region (see the module docstring)."""

    def __init__(
        self,
        target: Any,
        *,
        name: str = STACK_NAME,
        prefix: str = DEFAULT_PREFIX,
        user: str = "",
        batch_subnets: str | None = None,
        batch_security_groups: str | None = None,
    ) -> None:
        from remote.providers.aws_client import make_client

        self.target = target
        self.name = name
        self.parameters = {"ResourcePrefix": prefix, "TrainingUserName": user}
        self.batch = {"BatchSubnetIds": batch_subnets, "BatchSecurityGroupIds": batch_security_groups}
        """None: what the deployed stack has (nothing when there is no stack)."""
        self.cf = make_client("cloudformation", target)

    def _resolve(self, stack: dict[str, Any] | None) -> None:
        """Fill the Batch network parameters not given from the stack; check they go together."""
        current = _current(stack)
        for key, value in self.batch.items():
            self.parameters[key] = _ids(current.get(key, "") if value is None else value)
        subnets, groups = self.parameters["BatchSubnetIds"], self.parameters["BatchSecurityGroupIds"]
        if bool(subnets) != bool(groups):
            raise StackRefused(
                "the engine's Batch queue needs both subnets and security groups "
                f"(got subnets {subnets!r}, security groups {groups!r}); give --batch-subnets and --batch-security-groups"
            )

    @staticmethod
    def template() -> dict[str, Any]:
        return dict(json.loads(TEMPLATE.read_text()))

    def describe(self) -> dict[str, Any] | None:
        """The stack as DescribeStacks shows it, or None when there is none."""
        try:
            stacks = self._call("DescribeStacks", self.cf.describe_stacks, StackName=self.name)["Stacks"]
        except ProviderError as exc:
            if exc.code == "ValidationError" and "does not exist" in str(exc):
                return None
            raise
        return dict(stacks[0]) if stacks else None

    def diff(self) -> list[str]:
        """One line per resource or parameter a deploy would add, change or remove ([] when none)."""
        stack = self.describe()
        self._resolve(stack)
        wanted = self.template()
        if stack is None:
            return [f"+ {rid} ({r['Type']})" for rid, r in wanted["Resources"].items() if self._holds(wanted, r)]
        body = self._call("GetTemplate", self.cf.get_template, StackName=self.name)["TemplateBody"]
        deployed = json.loads(body) if isinstance(body, str) else json.loads(json.dumps(body))
        lines = []
        old, new = deployed.get("Resources", {}), wanted["Resources"]
        for rid in sorted(set(old) | set(new)):
            if rid not in old:
                lines.append(f"+ {rid} ({new[rid]['Type']})")
            elif rid not in new:
                lines.append(f"- {rid} ({old[rid]['Type']})")
            elif _canon(old[rid]) != _canon(new[rid]):
                lines.append(f"~ {rid} ({new[rid]['Type']})")
        if _canon(deployed.get("Outputs", {})) != _canon(wanted.get("Outputs", {})):
            lines.append("~ Outputs")
        current = _current(stack)
        for key, value in sorted(self.parameters.items()):
            if current.get(key, "") != value:
                lines.append(f"~ parameter {key}: {current.get(key, '')!r} -> {value!r}")
        return lines

    def deploy(self) -> Deployed:
        self._check_user()
        stack = self.describe()
        if stack is not None:
            self._check_deployable(stack)
        changes = tuple(self.diff())
        args = {
            "StackName": self.name,
            "TemplateBody": TEMPLATE.read_text(),
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(self.parameters.items())],
            "Capabilities": ["CAPABILITY_NAMED_IAM"],
            "Tags": [{"Key": "managed-by", "Value": "retrain-console"}],
        }
        if stack is None:
            self._call("CreateStack", self.cf.create_stack, **args)
            action = "created"
        elif not changes:
            return Deployed("unchanged", (), self.outputs())
        else:
            change_set = f"rc-{int(time.time())}"
            self._call("CreateChangeSet", self.cf.create_change_set, ChangeSetName=change_set,
                       ChangeSetType="UPDATE", **args)  # fmt: skip
            self._wait_change_set(change_set)
            self._call("ExecuteChangeSet", self.cf.execute_change_set, StackName=self.name, ChangeSetName=change_set)
            action = "updated"
        final = self._wait_stable()
        if not str(final.get("StackStatus", "")).endswith("_COMPLETE") or "ROLLBACK" in final["StackStatus"]:
            raise StackRefused(
                f"stack {self.name} ended {final.get('StackStatus')}: {final.get('StackStatusReason') or 'see its events'}"
            )
        return Deployed(action, changes, self.outputs())

    def outputs(self) -> StackOutputs:
        stack = self.describe()
        if stack is None:
            raise StackRefused(f"no stack {self.name} in {self.target.where}; run `console infra deploy`")
        found = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        try:
            return StackOutputs(
                role_arn=found["SageMakerExecutionRoleArn"],
                bucket=found["TrainingBucketName"],
                policy_arn=found["TrainingPolicyArn"],
                image_repository=found["ImageRepositoryUri"],
                region=found.get("Region") or self.target.region,
                batch_queue=found.get("BatchJobQueueName", ""),
                batch_compute_environment=found.get("BatchComputeEnvironmentName", ""),
                batch_job_definition=found.get("BatchJobDefinitionName", ""),
            )
        except KeyError as exc:
            raise StackRefused(f"stack {self.name} has no output {exc.args[0]}; run `console infra deploy`") from None

    def destroy(self) -> tuple[str, ...]:
        """Delete the stack (the bucket and repository are retained); what was kept."""
        if self.describe() is None:
            return ()
        self._call("DeleteStack", self.cf.delete_stack, StackName=self.name)
        self._wait_stable()
        return RETAINED

    # --- helpers ----------------------------------------------------------------------

    def _holds(self, template: dict[str, Any], resource: dict[str, Any]) -> bool:
        """Whether ``resource`` is created with these parameters (its ``Condition``, if any, holds)."""
        name = resource.get("Condition")
        return name is None or bool(_evaluate(template["Conditions"][name], self.parameters))

    def _check_user(self) -> None:
        """The user the policy goes to exists (else CloudFormation fails half-way and rolls back)."""
        from remote.providers.aws_client import make_client

        user = self.parameters["TrainingUserName"]
        if not user:
            return
        try:
            self._call("GetUser", make_client("iam", self.target).get_user, UserName=user)
        except ProviderError as exc:
            if exc.code == "NoSuchEntity":
                raise StackRefused(
                    f"IAM user {user!r} (TRAINING_USER_NAME) does not exist in {self.target.where}; "
                    "create it, or unset TRAINING_USER_NAME to attach the policy later"
                ) from None
            raise

    def _check_deployable(self, stack: dict[str, Any]) -> None:
        status = str(stack.get("StackStatus", ""))
        if status in REFUSED_STATES:
            raise StackRefused(
                f"stack {self.name} is {status} ({stack.get('StackStatusReason') or 'see its events'}); "
                "run `console infra destroy`, then `console infra deploy`"
            )
        if status.endswith("_IN_PROGRESS"):
            raise StackRefused(f"stack {self.name} is {status}; wait for it to finish, then deploy again")

    def _wait_change_set(self, change_set: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._call("DescribeChangeSet", self.cf.describe_change_set, StackName=self.name,
                               ChangeSetName=change_set)  # fmt: skip
            if found["Status"] == "CREATE_COMPLETE":
                return
            if found["Status"] == "FAILED" or time.monotonic() > deadline:
                raise StackRefused(f"change set for {self.name} {found['Status']}: {found.get('StatusReason', '')}")
            time.sleep(2)

    def _wait_stable(self, timeout_s: float = 1800) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            stack = self.describe()
            if stack is None or not str(stack.get("StackStatus", "")).endswith("_IN_PROGRESS"):
                return stack or {"StackStatus": "DELETE_COMPLETE"}
            if time.monotonic() > deadline:
                raise StackRefused(f"stack {self.name} is still {stack['StackStatus']}; see its events")
            time.sleep(2)

    def _call(self, operation: str, fn: Any, **kwargs: Any) -> Any:
        from remote.providers.aws_client import call

        return call(self.target, operation, fn, **kwargs)


def _current(stack: dict[str, Any] | None) -> dict[str, str]:
    """The stack's parameter values; a list parameter as ``a,b`` (moto shows it as a Python list)."""
    found = {p["ParameterKey"]: p.get("ParameterValue", "") for p in (stack or {}).get("Parameters", [])}
    for key in ("BatchSubnetIds", "BatchSecurityGroupIds"):
        if key in found:
            found[key] = ",".join(re.findall(r"(?:subnet|sg)-[0-9a-f]+", found[key]))
    return found


def _ids(value: str) -> str:
    """A comma-separated list of AWS ids, spaces dropped; a bad id is refused (exit 2) before AWS sees it."""
    ids = [part.strip() for part in value.split(",") if part.strip()]
    for one in ids:
        if not re.fullmatch(r"(subnet|sg)-[0-9a-f]{8,17}", one):
            raise StackRefused(f"{one!r} is not a subnet or security group id (subnet-0abc..., sg-0abc...)")
    return ",".join(ids)


def _evaluate(node: Any, parameters: dict[str, str]) -> Any:
    """The template's condition functions this stack uses (Fn::Not, Fn::Equals, Fn::Join, Ref)."""
    if isinstance(node, dict) and len(node) == 1:
        ((fn, args),) = node.items()
        if fn == "Ref":
            return parameters.get(args, "")
        if fn == "Fn::Not":
            return not _evaluate(args[0], parameters)
        if fn == "Fn::Equals":
            return _evaluate(args[0], parameters) == _evaluate(args[1], parameters)
        if fn == "Fn::Join":
            parts = _evaluate(args[1], parameters)
            return args[0].join(parts.split(",") if isinstance(parts, str) else parts)
    return node


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
