"""The one container image's entry point for managed training (SageMaker, AWS Batch).

``python -m training.container MODE`` (the image's ENTRYPOINT is ``python -m training.container``
and the service passes the mode: SageMaker runs the image with ``train``). Each mode is one
line of the table in `training.container.__main__` and one module here:

    sagemaker   training.container.sagemaker     SageMaker's /opt/ml contract (`OptMl`)
    batch-child training.container.batch         one shard of an AWS Batch array job
    batch-fetch training.container.batch_fetch   one shard's candles, feature files, encoder moments
    dql         training.container.dql           the deep-Q agent's full workflow (seed 004)

A mode trains through the same driver as the SSH host (`training.train.run_job`, i.e.
`training.families.run.train_unit`), so every registered family trains this way.

The guard holds here too (`check_job_token`): the container refuses to train (exit 3,
"refusing to train locally: ...") unless it runs inside a job the console submitted. The
console names the job in its environment (``RC_JOB_NAME``, and SageMaker's own
``TRAINING_JOB_NAME``) and hands it a token (``RC_JOB_TOKEN``); the job's hyperparameters
carry ``rc_job_name`` and ``rc_job_token_sha256`` = sha256 of ``"<job name>:<token>"``.
The token itself never appears in hyperparameters, logs or artifacts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from training.errors import LocalTrainingRefused

OPT_ML_ENV = "RC_OPT_ML"
"""Where the /opt/ml tree is (the sandbox runs each job in its own tree); ``/opt/ml`` in a real container."""
TOKEN_ENV = "RC_JOB_TOKEN"
JOB_NAME_ENVS = ("TRAINING_JOB_NAME", "RC_JOB_NAME", "AWS_BATCH_JOB_NAME")
"""The job's own name, as the service (or the console) put it in the environment."""


def token_digest(job_name: str, token: str) -> str:
    """What the job's hyperparameters carry for its token: sha256 of ``"<job name>:<token>"``."""
    return hashlib.sha256(f"{job_name}:{token}".encode()).hexdigest()


def check_job_token(environ: Mapping[str, str], hyperparameters: Mapping[str, str]) -> str:
    """The job's name if this process runs inside the job the console submitted; else refuse (exit 3)."""
    expected = str(hyperparameters.get("rc_job_name") or "")
    digest = str(hyperparameters.get("rc_job_token_sha256") or "")
    if not expected or not digest:
        raise LocalTrainingRefused(
            "refusing to train locally: the job carries no console job token (submit it with `console train cloud`)"
        )
    names = {environ[k] for k in JOB_NAME_ENVS if environ.get(k)}
    if not names:
        raise LocalTrainingRefused(
            "refusing to train locally: no training job names this process (TRAINING_JOB_NAME is not set)"
        )
    if names != {expected}:
        raise LocalTrainingRefused(
            f"refusing to train locally: this is job {', '.join(sorted(names))}, the token is for {expected}"
        )
    token = environ.get(TOKEN_ENV, "")
    if not token or not hmac.compare_digest(token_digest(expected, token), digest):
        raise LocalTrainingRefused(f"refusing to train locally: job {expected} has no valid console job token")
    return expected


@dataclass(frozen=True)
class OptMl:
    """SageMaker's container layout under one root (``/opt/ml``)."""

    root: Path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "OptMl":
        environ = os.environ if environ is None else environ
        return cls(Path(environ.get(OPT_ML_ENV) or "/opt/ml"))

    @property
    def hyperparameters(self) -> Path:
        return self.root / "input" / "config" / "hyperparameters.json"

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    @property
    def model(self) -> Path:
        """What the service packs into ``model.tar.gz`` when the job succeeds."""
        return self.root / "model"

    @property
    def failure(self) -> Path:
        """One line on why the job failed: the service shows it as the job's FailureReason."""
        return self.root / "output" / "failure"

    @property
    def checkpoints(self) -> Path:
        """Copied to the job's checkpoint S3 prefix as written; restored there after a spot interruption."""
        return self.root / "checkpoints"
