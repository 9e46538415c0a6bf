"""The deep-Q agent's full workflow on AWS Batch (seed 004's "AWS Batch alternative").

`DqlBatchBackend` is the ``batch`` backend (queue, compute environment, follow, collect:
`remote.backends.batch.BatchBackend`) with the seed's own job definition: its command is
the container's ``dql`` mode with the seed's parameters as ``Ref::`` placeholders
(`DQL_COMMAND`), so a submission carries ``parameters`` as the seed's ``--parameters``::

    {"agent_type": "custom", "data_file": "s3://.../BTC-USD.parquet",
     "experiment_name": "exp1", "episodes": "30", "settings": "s3://.../settings.json"}

Several experiments are one array job: each parameter is then a comma-separated list the
child at index i takes item i of (`training.container.dql`). ``settings`` is the JSON the
console writes next to the job (the guard's digest, where outputs go, costs, the agent's
other settings); the token itself only travels in the job's environment.

``JobSpec.params["experiments"]`` lists the experiments (``agent_type``, ``data_file`` as an
``s3://`` URL, ``experiment_name``, ``episodes``); ``JobSpec.units`` are their names. Collect
brings each experiment's model folder and report folder home, every file checked against
its ``sha256.txt``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from remote.backends.base import JobRef, JobSpec
from remote.backends.batch import RETRY_ON_RECLAIM, BatchBackend
from remote.errors import ProviderError

PARAMETERS = ("agent_type", "data_file", "experiment_name", "episodes", "settings")
DQL_COMMAND = (
    "python", "-m", "training.container", "dql", "full-workflow",
    "--agent-type", "Ref::agent_type",
    "--data-file", "Ref::data_file",
    "--experiment-name", "Ref::experiment_name",
    "--episodes", "Ref::episodes",
    "--settings", "Ref::settings",
)  # fmt: skip
DEFAULT_PARAMETERS = {"agent_type": "custom", "episodes": "30"}
"""The definition's defaults (a submission names the rest; the seed's ``episodes`` is a string)."""


class DqlBatchBackend(BatchBackend):
    """`BatchBackend` with the dql job definition (``Ref::`` parameters) and report collection."""

    definition_name: ClassVar[str] = "rc-dql"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.dql_definition = str(self.options.get("dql_job_definition") or self.definition_name)

    def definition_properties(self) -> dict[str, Any]:
        vcpus = str(self.options.get("vcpus", 1))
        return {
            "image": str(self.options.get("image") or "retrain-console:latest"),
            "command": list(DQL_COMMAND),
            "resourceRequirements": [
                {"type": "VCPU", "value": vcpus},
                {"type": "MEMORY", "value": str(self.options.get("memory_mb", 2048))},
            ],
            "environment": [{"name": "OMP_NUM_THREADS", "value": vcpus}],
        }

    def ensure_definition(self) -> str:
        """The dql job definition (registered once; again only when its command changed); its ARN."""
        found = self._call("batch", "describe_job_definitions", jobDefinitionName=self.dql_definition, status="ACTIVE")[
            "jobDefinitions"
        ]
        wanted = self.definition_properties()
        for row in sorted(found, key=lambda r: -int(r.get("revision", 0))):
            if list((row.get("containerProperties") or {}).get("command") or ()) == wanted["command"]:
                return str(row["jobDefinitionArn"])
        made = self._call(
            "batch",
            "register_job_definition",
            jobDefinitionName=self.dql_definition,
            type="container",
            parameters=dict(DEFAULT_PARAMETERS),
            containerProperties=wanted,
            retryStrategy={"attempts": 3, "evaluateOnExit": RETRY_ON_RECLAIM},
            tags={"managed-by": "retrain-console"},
        )
        return str(made["jobDefinitionArn"])

    def prepare_queue(self) -> None:
        """The bucket, the spot compute environment and the queue (as `BatchBackend.prepare`), the definition."""
        from remote.errors import StorageError

        if not self.bucket:
            raise StorageError("the batch backend needs a bucket ([backends.batch] bucket)")
        self._ensure_bucket()
        self._ensure_queue()
        self.ensure_definition()

    def upload_data_file(self, run_id: str, index: int, path: Path, symbol: str) -> str:
        """A feature file (or part folder) to ``runs/<run>/inputs/data-<index>/<symbol>.parquet``; its URL."""
        self._ensure_bucket()
        key = f"runs/{run_id}/inputs/data-{index}/{symbol}.parquet"
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            suffix = "" if path.is_file() else "/" + f.relative_to(path).as_posix()
            self._call("s3", "upload_file", Filename=str(f), Bucket=self.bucket, Key=key + suffix)
        return f"s3://{self.bucket}/{key}"

    def submit(self, spec: JobSpec) -> JobRef:
        existing = self._find(spec)
        if existing is not None:
            return existing
        experiments = [dict(e) for e in spec.params.get("experiments") or ()]
        if len(experiments) != spec.array_size or [e["experiment_name"] for e in experiments] != list(spec.units):
            raise ValueError("a dql job names one experiment per child, in the order of its units")
        definition = self.ensure_definition()
        prefix = self._prefix(spec)
        token = secrets.token_urlsafe(24)
        settings = {
            "job_name": spec.name,
            "rc_job_token_sha256": hashlib.sha256(f"{spec.name}:{token}".encode()).hexdigest(),
            "array_size": spec.array_size,
            "out": f"s3://{self.bucket}/{prefix}out/",
            "costs": dict(spec.params.get("costs") or {}),
            "params": dict(spec.params.get("agent") or {}),
            "seed": int(spec.params.get("seed") or 0),
        }
        self._call("s3", "put_object", Bucket=self.bucket, Key=prefix + "settings.json", Body=json.dumps(settings))
        parameters = job_parameters(experiments, f"s3://{self.bucket}/{prefix}settings.json")
        return self._submit_job(spec, prefix, token, definition, {}, parameters=parameters)

    def _gather(self, ref: JobRef, dest: Path) -> dict[str, Any]:
        """The models (as the batch backend gathers them) and each experiment's report, checked."""
        from remote.backends.batch_collect import fetch_folder

        summary = super()._gather(ref, dest)
        for row in summary["units"]:
            if row.get("state") == "succeeded" and row.get("report_dir"):
                fetch_folder(lambda key: self._get(ref, key), str(row["report_dir"]), dest)
        return summary


def job_parameters(experiments: Sequence[Mapping[str, Any]], settings_url: str) -> dict[str, str]:
    """The submission's ``parameters``: each the experiments' values, comma-separated in order
    (or the one value they share)."""
    out = {}
    for name in PARAMETERS[:-1]:
        values = [str(e[name]) for e in experiments]
        if any("," in v for v in values):
            raise ProviderError(f"a dql {name} may not contain a comma: {values}")
        out[name] = values[0] if len(set(values)) == 1 else ",".join(values)  # one value: every child's
    out["settings"] = settings_url
    return out
