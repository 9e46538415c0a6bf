"""The account's live SageMaker training jobs that are ours, for the watchdog (and one job
described again, for the ledger's finished-job sweep).

A job is ours when it carries the ``managed-by: retrain-console`` tag (`request.MANAGED_TAG`);
its run is the ``retrain-console:run-id`` tag. Each view has what the rules need: when it was
made, its instance type, and its training and billable seconds so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from remote.backends.sagemaker.request import MANAGED_TAG, MANAGED_VALUE, RUN_TAG
from remote.providers.aws_client import call, make_client


@dataclass(frozen=True)
class TrainingJobView:
    name: str
    arn: str
    run_id: str | None
    status: str
    secondary: str
    created_at: float
    instance_type: str
    spot: bool
    training_s: float
    billable_s: float
    ended_at: float | None = None
    """When the job ended (TrainingEndTime), None while it runs."""


def live_training_jobs(target: Any) -> list[TrainingJobView]:
    """Our InProgress training jobs (newest first)."""
    sm = make_client("sagemaker", target)
    views = []
    kwargs: dict[str, Any] = {"StatusEquals": "InProgress"}
    while True:
        page = call(target, "ListTrainingJobs", sm.list_training_jobs, **kwargs)
        for summary in page.get("TrainingJobSummaries", []):
            arn = summary["TrainingJobArn"]
            tags = {t["Key"]: t["Value"] for t in call(target, "ListTags", sm.list_tags, ResourceArn=arn)["Tags"]}
            if tags.get(MANAGED_TAG) != MANAGED_VALUE:
                continue
            d = call(
                target, "DescribeTrainingJob", sm.describe_training_job, TrainingJobName=summary["TrainingJobName"]
            )
            views.append(_view(d, arn, tags.get(RUN_TAG)))
        if not page.get("NextToken"):
            return views
        kwargs["NextToken"] = page["NextToken"]


def describe_training_job(target: Any, name: str) -> TrainingJobView | None:
    """One job as it is now, whatever its state (None when SageMaker knows no job of that name)."""
    from remote.errors import ProviderError

    sm = make_client("sagemaker", target)
    try:
        d = call(target, "DescribeTrainingJob", sm.describe_training_job, TrainingJobName=name)
    except ProviderError as exc:
        if exc.code == "ValidationException" and "not found" in str(exc).lower():
            return None
        raise
    return _view(d, str(d.get("TrainingJobArn") or ""), (d.get("HyperParameters") or {}).get("rc_run_id"))


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def _view(d: dict[str, Any], arn: str, run_id: str | None) -> TrainingJobView:
    return TrainingJobView(
        name=d["TrainingJobName"],
        arn=arn,
        run_id=run_id,
        status=d["TrainingJobStatus"],
        secondary=d.get("SecondaryStatus", ""),
        created_at=_seconds(d["CreationTime"]) or 0.0,
        instance_type=(d.get("ResourceConfig") or {}).get("InstanceType", ""),
        spot=bool(d.get("EnableManagedSpotTraining")),
        training_s=float(d.get("TrainingTimeInSeconds") or 0),
        billable_s=float(d.get("BillableTimeInSeconds") or 0),
        ended_at=_seconds(d.get("TrainingEndTime") or d.get("LastModifiedTime")),
    )


def stop_training_job(target: Any, name: str) -> None:
    sm = make_client("sagemaker", target)
    call(target, "StopTrainingJob", sm.stop_training_job, TrainingJobName=name)
