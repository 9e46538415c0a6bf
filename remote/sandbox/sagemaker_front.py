"""The sandbox's SageMaker front: the training-job calls moto only pretends to serve.

moto accepts ``CreateTrainingJob`` and marks the job Completed without running anything,
has no ``StopTrainingJob`` (HTTP 500), accepts duplicate names, missing roles and a
MaxWait below MaxRuntime, writes no ``model.tar.gz`` and reports no billable seconds. This
WSGI layer (outside the EC2 front) takes over, for requests whose ``X-Amz-Target`` is

    SageMaker.CreateTrainingJob     validated like AWS (name, unique name, role that exists
                                    and trusts sagemaker.amazonaws.com, MaxWait >= MaxRuntime
                                    for managed spot), then run for real (`sagemaker_jobs`)
    SageMaker.DescribeTrainingJob   / ListTrainingJobs / StopTrainingJob / ListTags (of our jobs)

Everything else goes to moto unchanged. Control API: ``POST /_sandbox/sagemaker/interrupt``
``{"job_name"}`` interrupts a managed-spot job (Interrupted -> Restarting -> resumed).
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable

from remote.sandbox.sagemaker_jobs import Job, SageMakerJobs

StartResponse = Callable[..., Any]
ACCOUNT = "123456789012"
"""moto's default account id."""
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_TARGETS = ("CreateTrainingJob", "DescribeTrainingJob", "ListTrainingJobs", "StopTrainingJob", "ListTags")


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class SageMakerFront:
    """WSGI middleware: SageMaker training jobs that really run (see the module docstring)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], jobs: SageMakerJobs, region: str) -> None:
        self.app = app
        self.jobs = jobs
        self.region = region

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/_sandbox/sagemaker/interrupt" and environ.get("REQUEST_METHOD") == "POST":
            return self._interrupt(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        service, _, action = target.partition(".")
        if service != "SageMaker" or action not in _TARGETS:
            return self.app(environ, start_response)
        body = _read_body(environ)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return _json(start_response, 400, {"__type": "SerializationException", "message": "bad JSON"})
        if action == "ListTags" and self._job_of_arn(request.get("ResourceArn", "")) is None:
            return self._pass_through(environ, start_response, body)
        try:
            answer = getattr(self, f"_{action}")(request)
        except ApiError as exc:
            return _json(start_response, exc.status, {"__type": exc.code, "message": exc.message})
        return _json(start_response, 200, answer)

    # --- the actions ------------------------------------------------------------------

    def _CreateTrainingJob(self, r: dict[str, Any]) -> dict[str, Any]:
        name = str(r.get("TrainingJobName", ""))
        if not _NAME.fullmatch(name):
            raise ApiError(
                "ValidationException",
                f"1 validation error detected: Value '{name}' at 'trainingJobName' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
            )
        arn = f"arn:aws:sagemaker:{self.region}:{ACCOUNT}:training-job/{name.lower()}"
        if self.jobs.get(name) is not None:
            raise ApiError(
                "ResourceInUse",
                "Training job names must be unique within an AWS account and region, and a training job with "
                f"this name already exists ({arn})",
            )
        if not (r.get("AlgorithmSpecification") or {}).get("TrainingImage"):
            raise ApiError("ValidationException", "AlgorithmSpecification.TrainingImage is required")
        self._check_role(str(r.get("RoleArn", "")))
        cond = r.get("StoppingCondition") or {}
        runtime, wait = cond.get("MaxRuntimeInSeconds"), cond.get("MaxWaitTimeInSeconds")
        if r.get("EnableManagedSpotTraining") and (wait is None or runtime is None or int(wait) < int(runtime)):
            raise ApiError(
                "ValidationException",
                "Invalid MaxWaitTimeInSeconds. It must be present and be greater than or equal to MaxRuntimeInSeconds",
            )
        if not r.get("EnableManagedSpotTraining") and wait is not None:
            raise ApiError("ValidationException", "MaxWaitTimeInSeconds is only valid with managed spot training")
        if not str((r.get("OutputDataConfig") or {}).get("S3OutputPath", "")).startswith("s3://"):
            raise ApiError("ValidationException", "OutputDataConfig.S3OutputPath must be an s3:// URI")
        self.jobs.create(Job(name=name, arn=arn, request=r))
        return {"TrainingJobArn": arn}

    def _DescribeTrainingJob(self, r: dict[str, Any]) -> dict[str, Any]:
        return self._job(str(r.get("TrainingJobName", ""))).describe()

    def _StopTrainingJob(self, r: dict[str, Any]) -> dict[str, Any]:
        job = self._job(str(r.get("TrainingJobName", "")))
        if job.status != "InProgress":
            raise ApiError("ValidationException", f"The training job {job.name} is {job.status}; it cannot be stopped")
        self.jobs.stop(job)
        return {}

    def _ListTrainingJobs(self, r: dict[str, Any]) -> dict[str, Any]:
        jobs = sorted(self.jobs.all(), key=lambda j: j.created, reverse=True)
        contains = str(r.get("NameContains") or "")
        status = r.get("StatusEquals")
        found = [j.summary() for j in jobs if contains in j.name and (status is None or j.status == status)]
        return {"TrainingJobSummaries": found}

    def _ListTags(self, r: dict[str, Any]) -> dict[str, Any]:
        job = self._job_of_arn(str(r.get("ResourceArn", "")))
        assert job is not None
        return {"Tags": list(job.request.get("Tags") or [])}

    # --- helpers -----------------------------------------------------------------------

    def _job(self, name: str) -> Job:
        job = self.jobs.get(name)
        if job is None:
            raise ApiError("ValidationException", "Requested resource not found.")
        return job

    def _job_of_arn(self, arn: str) -> Job | None:
        return next((j for j in self.jobs.all() if j.arn == arn), None)

    def _check_role(self, arn: str) -> None:
        match = re.fullmatch(r"arn:aws:iam::\d{12}:role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})", arn)
        refusal = ApiError(
            "ValidationException",
            f"Could not assume role {arn}. Please ensure that the role exists and allows principal "
            "'sagemaker.amazonaws.com' to assume the role.",
        )
        if match is None:
            raise refusal
        iam = self.jobs.clients("iam")
        try:
            role = iam.get_role(RoleName=match.group(1))["Role"]
        except iam.exceptions.NoSuchEntityException:
            raise refusal from None
        if "sagemaker.amazonaws.com" not in json.dumps(role.get("AssumeRolePolicyDocument", "")):
            raise refusal

    def _interrupt(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            data = json.loads(_read_body(environ) or b"{}")
            job = self.jobs.get(str(data["job_name"]))
            if job is None:
                return _json(start_response, 404, {"error": f"no training job {data['job_name']!r}"})
            self.jobs.interrupt(job)
        except (KeyError, ValueError, TypeError) as exc:
            return _json(start_response, 400, {"error": f"bad control request: {exc}"})
        return _json(start_response, 200, {"ok": True})

    def _pass_through(self, environ: dict[str, Any], start_response: StartResponse, body: bytes) -> Iterable[bytes]:
        import io

        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def _read_body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return environ["wsgi.input"].read(length) if length else b""


def _json(start_response: StartResponse, status: int, data: Any) -> list[bytes]:
    body = json.dumps(data, default=str).encode()
    start_response(
        f"{status} {'OK' if status == 200 else 'Error'}",
        [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))],
    )
    return [body]
