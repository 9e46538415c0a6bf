"""The account's live SageMaker training jobs that are ours, for the watchdog.

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
            created = d["CreationTime"]
            views.append(
                TrainingJobView(
                    name=d["TrainingJobName"],
                    arn=arn,
                    run_id=tags.get(RUN_TAG),
                    status=d["TrainingJobStatus"],
                    secondary=d.get("SecondaryStatus", ""),
                    created_at=created.timestamp() if hasattr(created, "timestamp") else float(created),
                    instance_type=(d.get("ResourceConfig") or {}).get("InstanceType", ""),
                    spot=bool(d.get("EnableManagedSpotTraining")),
                    training_s=float(d.get("TrainingTimeInSeconds") or 0),
                    billable_s=float(d.get("BillableTimeInSeconds") or 0),
                )
            )
        if not page.get("NextToken"):
            return views
        kwargs["NextToken"] = page["NextToken"]


def stop_training_job(target: Any, name: str) -> None:
    sm = make_client("sagemaker", target)
    call(target, "StopTrainingJob", sm.stop_training_job, TrainingJobName=name)
