"""The CreateTrainingJob request of one `JobSpec`, and what the backend needs from its settings.

The job is built from the training config: the image, the execution role, the instance
type, ``MaxRuntimeInSeconds``, managed spot (``EnableManagedSpotTraining`` with
``MaxWaitTimeInSeconds`` >= the runtime), ``CheckpointConfig`` under the run's S3 prefix,
the input channels (``features``: the feature files, uploaded with their sha256;
``config``: the job's train / costs / gates / features sections), the hyperparameters
(family, units, and the guard's ``rc_job_name`` / ``rc_job_token_sha256``) and tags that
carry the run id. The job token itself goes only into the job's ``Environment``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

from remote.backends.base import JobSpec
from remote.errors import RemoteError

DEFAULT_INSTANCE_TYPE = "ml.g4dn.xlarge"
DEFAULT_IMAGE = "retrain-console-training:latest"
DEFAULT_PREFIX = "retrain-console"
RUN_TAG = "retrain-console:run-id"
MANAGED_TAG = "managed-by"
MANAGED_VALUE = "retrain-console"
CONFIG_SECTIONS = ("train", "costs", "gates", "features")


class BackendNotConfigured(RemoteError):
    """A setting the managed backend needs is missing (exit 2: fix the settings)."""

    exit_code = 2


@dataclass(frozen=True)
class SageMakerOptions:
    """The ``[backends.sagemaker]`` options (the console fills them from the seed's settings)."""

    role_arn: str
    bucket: str
    prefix: str = DEFAULT_PREFIX
    instance_type: str = DEFAULT_INSTANCE_TYPE
    image: str = DEFAULT_IMAGE
    spot: bool = True
    features_dir: str = ""
    volume_gb: int = 30

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> "SageMakerOptions":
        for key, setting in (("role_arn", "SAGEMAKER_ROLE_ARN"), ("bucket", "SAGEMAKER_S3_BUCKET")):
            if not raw.get(key):
                raise BackendNotConfigured(
                    f"{setting} is not set; run `console infra deploy` and put the lines it prints in .env"
                )
        return cls(
            role_arn=str(raw["role_arn"]),
            bucket=str(raw["bucket"]),
            prefix=str(raw.get("prefix") or DEFAULT_PREFIX).strip("/"),
            instance_type=str(raw.get("instance_type") or DEFAULT_INSTANCE_TYPE),
            image=str(raw.get("image") or DEFAULT_IMAGE),
            spot=bool(raw.get("spot", True)),
            features_dir=str(raw.get("features_dir") or ""),
            volume_gb=int(raw.get("volume_gb") or 30),
        )

    def run_prefix(self, run_id: str) -> str:
        return f"{self.prefix}/runs/{run_id}"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def instance_type_of(spec: JobSpec, options: SageMakerOptions) -> str:
    """SageMaker's ``ml.`` type: the spec's when it names one, else the configured one."""
    return spec.instance_type if spec.instance_type.startswith("ml.") else options.instance_type


def config_text(spec: JobSpec) -> str:
    """The ``config`` channel's ``train-config.json``."""
    return json.dumps({k: spec.params[k] for k in CONFIG_SECTIONS if k in spec.params}, indent=2) + "\n"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(job_name: str, token: str) -> str:
    """sha256 of ``"<job name>:<token>"``: the contract `training.container.check_job_token` checks
    (the same two lines there: ``remote`` may not import ``training``)."""
    return hashlib.sha256(f"{job_name}:{token}".encode()).hexdigest()


def create_request(spec: JobSpec, options: SageMakerOptions, token: str, channels: Mapping[str, str]) -> dict[str, Any]:
    """The CreateTrainingJob arguments (see the module docstring)."""
    run = options.run_prefix(spec.run_id)
    runtime = int(spec.max_runtime_s)
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": runtime}
    if spec.spot and options.spot:
        stopping["MaxWaitTimeInSeconds"] = int(spec.max_wait_s or 2 * runtime)
    tags = {RUN_TAG: spec.run_id, MANAGED_TAG: MANAGED_VALUE, **{str(k): str(v) for k, v in spec.tags.items()}}
    request: dict[str, Any] = {
        "TrainingJobName": spec.name,
        "AlgorithmSpecification": {"TrainingImage": options.image, "TrainingInputMode": "File"},
        "RoleArn": options.role_arn,
        "HyperParameters": {
            "rc_job_name": spec.name,
            "rc_job_token_sha256": token_digest(spec.name, token),
            "rc_run_id": spec.run_id,
            "family": spec.family,
            "units": ",".join(spec.units),
        },
        "InputDataConfig": [
            {
                "ChannelName": name,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }  # fmt: skip
            for name, uri in sorted(channels.items())
        ],
        "OutputDataConfig": {"S3OutputPath": options.uri(f"{run}/output")},
        "ResourceConfig": {
            "InstanceType": instance_type_of(spec, options),
            "InstanceCount": 1,
            "VolumeSizeInGB": options.volume_gb,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": "MaxWaitTimeInSeconds" in stopping,
        "CheckpointConfig": {
            "S3Uri": options.uri(f"{run}/checkpoints/{spec.name}"),
            "LocalPath": "/opt/ml/checkpoints",
        },
        "Environment": {"RC_JOB_NAME": spec.name, "RC_JOB_TOKEN": token},
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())],
    }
    return request
