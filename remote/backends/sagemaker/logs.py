"""A SageMaker job's log, read from CloudWatch Logs as it is written, as `JobEvent` s.

SageMaker writes the container's output to ``/aws/sagemaker/TrainingJobs``, one stream per
instance and start (``<job>/algo-1-<epoch>``). The container prints `training.train`'s
JSON lines; each becomes an event: ``epoch`` (each epoch once, even when a job restarted
after a spot interruption says it again), ``done`` (the unit's test figures), ``error``;
any other line is a ``log`` event.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from remote.backends.base import JobEvent

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class JobLog:
    """Where the reading of one job's streams got to."""

    def __init__(self, logs: Any, job: str) -> None:
        self.logs = logs
        self.job = job
        self.tokens: dict[str, str] = {}
        self.epochs: dict[str, int] = {}

    def read(self) -> Iterator[JobEvent]:
        """The lines written since the last call, as events."""
        try:
            streams = self.logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.job}/")
        except self.logs.exceptions.ResourceNotFoundException:
            return  # nothing written yet
        for stream in sorted(s["logStreamName"] for s in streams.get("logStreams", [])):
            while True:
                kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
                if stream in self.tokens:
                    kwargs["nextToken"] = self.tokens[stream]
                page = self.logs.get_log_events(**kwargs)
                for item in page.get("events", []):
                    event = self.event_of(str(item.get("message", "")))
                    if event is not None:
                        yield event
                token = page.get("nextForwardToken")
                if not token or token == self.tokens.get(stream):
                    break
                self.tokens[stream] = token
                if not page.get("events"):
                    break

    def event_of(self, line: str) -> JobEvent | None:
        line = line.rstrip("\n")
        try:
            data = json.loads(line) if line.startswith("{") else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or "event" not in data:
            return JobEvent(self.job, "log", line) if line.strip() else None
        kind, unit = str(data.get("event")), str(data.get("symbol") or "")
        if kind == "epoch":
            epoch = int(data.get("epoch") or 0)
            if epoch <= self.epochs.get(unit, 0):
                return None
            self.epochs[unit] = epoch
            fields = {k: data.get(k) for k in ("epoch", "epochs", "loss", "val_loss", "val_metric", "val_accuracy")}
            text = f"{unit} epoch {epoch}/{data.get('epochs')} loss {_fig(data.get('loss'))} val_loss {_fig(data.get('val_loss'))}"
            return JobEvent(self.job, "epoch", text, unit=unit, data={"symbol": unit, **fields})
        if kind == "done":
            done = {
                "state": "succeeded",
                "epochs": self.epochs.get(unit),
                "accuracy": data.get("test_accuracy"),
                "net_return": data.get("net_return"),
                "promoted": bool(data.get("promoted")),
                "passed": bool(data.get("passed")),
                "why": "; ".join(str(r) for r in data.get("reasons") or []),
                "model_dir": data.get("model_dir"),
            }
            return JobEvent(self.job, "done", f"{unit}: succeeded", unit=unit, data=done)
        if kind == "error":
            return JobEvent(self.job, "error", str(data.get("message") or ""), unit=unit, data=dict(data))
        if kind == "start":
            return JobEvent(self.job, "log", f"{unit}: training started ({line})", unit=unit)
        return JobEvent(self.job, "log", line, unit=unit)


def _fig(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)
