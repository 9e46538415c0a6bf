"""Managed cloud training (seed 000): the settings a managed backend is built from, and the
sandbox's stand-ins for what ``console infra deploy`` makes on AWS.

`backend_options` is what `console.resources.Resources.backend` hands a backend as its
``options``: for ``sagemaker`` the seed's settings (``SAGEMAKER_ROLE_ARN``,
``SAGEMAKER_S3_BUCKET``, ``SAGEMAKER_INSTANCE_TYPE``, ``SAGEMAKER_DOCKER_IMAGE``), the
features folder, and the ``[backends.sagemaker]`` section over them. On the sandbox profile,
a role or bucket left unset is the sandbox's own (made in moto on first use), so a fresh
clone trains on "SageMaker" with no account. (``resources`` is a `console.resources.Resources`,
untyped here: that module imports this one.)
"""

from __future__ import annotations

import json
import os
from typing import Any

MANAGED_BACKENDS = ("sagemaker",)
SANDBOX_TRAINING_BUCKET = "rc-sandbox-training"
SANDBOX_ROLE = "rc-sandbox-sagemaker-execution"
TRUST_SAGEMAKER = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def backend_options(resources: Any, name: str) -> dict[str, Any]:
    """The options backend ``name`` is built with (settings, then its ``[backends.<name>]`` section)."""
    settings = resources.settings
    section = dict(settings.backends.get(name, {}))
    if name not in MANAGED_BACKENDS:
        return section
    options: dict[str, Any] = {
        "role_arn": settings.sagemaker_role_arn,
        "bucket": settings.s3_bucket,
        "instance_type": settings.sagemaker_instance_type,
        "image": os.environ.get("SAGEMAKER_DOCKER_IMAGE") or os.environ.get("RC_SAGEMAKER_DOCKER_IMAGE"),
        "features_dir": str(resources.paths.features),
    }
    options.update({k: v for k, v in section.items() if v is not None})
    if resources.sandboxed and not (options.get("role_arn") and options.get("bucket")):
        role_arn, bucket = sandbox_training_account(resources)
        options["role_arn"] = options.get("role_arn") or role_arn
        options["bucket"] = options.get("bucket") or bucket
    return {k: v for k, v in options.items() if v is not None}


def sandbox_training_account(resources: Any) -> tuple[str, str]:
    """The sandbox's training bucket and execution role (made in moto if missing): (role ARN, bucket)."""
    from remote.providers.aws_client import make_client

    target = resources.aws_target()
    s3 = make_client("s3", target)
    try:
        s3.head_bucket(Bucket=SANDBOX_TRAINING_BUCKET)
    except s3.exceptions.ClientError:
        s3.create_bucket(Bucket=SANDBOX_TRAINING_BUCKET)
    iam = make_client("iam", target)
    try:
        role = iam.get_role(RoleName=SANDBOX_ROLE)["Role"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(RoleName=SANDBOX_ROLE, AssumeRolePolicyDocument=json.dumps(TRUST_SAGEMAKER))["Role"]
    return str(role["Arn"]), SANDBOX_TRAINING_BUCKET
