"""The sandbox's Batch front: the job verbs of AWS Batch answered by `BatchRunner`, the rest by moto.

boto3's Batch client talks REST-JSON (``POST /v1/<operation>``). This WSGI layer takes
``submitjob``, ``describejobs``, ``listjobs``, ``terminatejob`` and ``canceljob`` (moto keeps
the compute environments, queues and job definitions, and the front reads the queue and
definition of a submission from moto's own backend, so an unknown one is refused as AWS
refuses it); everything else goes to moto unchanged. ``POST /_sandbox/batch/reclaim``
``{"job_id": "<id>:<index>"}`` ends a running child as a spot reclaim does.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable

from remote.sandbox.batch_jobs import BatchClientError, BatchRunner

_BATCH_AUTH = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/batch/")
_OURS = ("submitjob", "describejobs", "listjobs", "terminatejob", "canceljob")
DEFAULT_ACCOUNT = "123456789012"

StartResponse = Callable[..., Any]


class BatchFront:
    """WSGI middleware: Batch job verbs here, everything else to ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], runner: BatchRunner) -> None:
        self.app = app
        self.runner = runner

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/_sandbox/batch/reclaim" and environ.get("REQUEST_METHOD") == "POST":
            try:
                self.runner.reclaim(str(_body(environ).get("job_id", "")))
            except LookupError as exc:
                return _json(start_response, 404, {"error": str(exc)})
            return _json(start_response, 200, {"ok": True})
        match = _BATCH_AUTH.search(environ.get("HTTP_AUTHORIZATION", ""))
        operation = path.rsplit("/", 1)[-1] if path.startswith("/v1/") else ""
        if not match or operation not in _OURS or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        region = match.group(1)
        try:
            return _json(start_response, 200, self._answer(operation, _body(environ), region))
        except BatchClientError as exc:
            return _json(start_response, 400, {"__type": "ClientException", "message": str(exc)})

    def _answer(self, operation: str, body: dict[str, Any], region: str) -> dict[str, Any]:
        if operation == "submitjob":
            queue, definition = _moto_lookup(region, str(body.get("jobQueue", "")), str(body.get("jobDefinition", "")))
            return self.runner.submit(body, definition=definition, queue=queue, region=region, account=DEFAULT_ACCOUNT)
        if operation == "describejobs":
            return {"jobs": self.runner.describe([str(j) for j in body.get("jobs") or ()])}
        if operation == "listjobs":
            rows = self.runner.list(
                queue=str(body.get("jobQueue") or ""),
                array_job_id=str(body.get("arrayJobId") or ""),
                status=str(body.get("jobStatus") or ""),
            )
            name_filter = [f for f in body.get("filters") or () if f.get("name") == "JOB_NAME"]
            if name_filter:
                wanted = set(name_filter[0].get("values") or ())
                rows = [r for r in rows if r["jobName"] in wanted]
            return {"jobSummaryList": rows}
        self.runner.terminate(str(body.get("jobId", "")), str(body.get("reason", "")) or "terminated")
        return {}


def _moto_lookup(region: str, queue_name: str, definition_name: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The queue and job definition as moto holds them (in this process); unknown ones refused."""
    from moto.batch.models import batch_backends

    backend = batch_backends[DEFAULT_ACCOUNT][region]
    queue = backend.get_job_queue(queue_name)
    if queue is None:
        raise BatchClientError(f"Job queue {queue_name} does not exist")
    definition = backend.get_job_definition(definition_name)
    if definition is None:
        raise BatchClientError(f"Job definition {definition_name} does not exist")
    return {"name": queue.name, "arn": queue.arn}, definition.describe()


def _body(environ: dict[str, Any]) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise BatchClientError("the request body is not JSON") from None
    return data if isinstance(data, dict) else {}


def _json(start_response: StartResponse, status: int, data: Any) -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(
        f"{status} {'OK' if status == 200 else 'Error'}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]
