"""The `TrainingBackend` seam: *where* a training job runs, whatever it trains.

A backend runs the container/host entry point of a `training.families` family somewhere
and hands the artifacts back, verified. The family never knows which backend runs it
(Metaflow's ``@batch`` idea); the checklist's train step never knows more than the verbs::

    prepare(run)        -> Prepared     make the place ready: for ``ssh`` launch, sync, lease;
                                        for managed services check role/bucket, upload inputs
    submit(spec)        -> JobRef       idempotent per (run, job name): a resumed step finds
                                        the job it started and never starts a second
    follow(ref, on_event, should_stop)  progress events until the job ends (or should_stop())
                        -> JobStatus
    status(ref)         -> JobStatus    one look, no waiting
    cancel(ref)         -> JobStatus    stop it; confirmed
    collect(ref, dest)  -> Collected    artifacts into ``dest`` (the artifact store / registry),
                                        every sha256 checked
    release(run_id)     -> ids          give back what the run holds (``ssh``: terminate and
                                        confirm; a managed service holds nothing: ``()``)

`capabilities` say what the backend does by itself; the checklist asks them rather than
backend names: a backend that `MANAGES_INSTANCES` makes the launch, sync and terminate
steps end SKIPPED with the reason; one that `RECOVERS_SPOT` needs no relaunch logic in
the step; one that `RUNS_ARRAYS` accepts ``JobSpec.array_size > 1``.

Adding a backend: write ``remote/backends/<name>.py`` with a class that satisfies
`TrainingBackend` and is built from a `BackendContext` (``Backend(context)``: the artifact
store, where AWS is, the run, a log, the ``[backends.<name>]`` settings section as
``options``), and add one line to `remote.backends.BACKENDS`; the console builds it in one
place (``console/resources.py``, `Resources.backend`). For a made-up ``slurm`` backend::

    remote/backends/slurm.py        class SlurmBackend: name = "slurm"; capabilities = frozenset(...)
                                                        def __init__(self, context: BackendContext) ...
                                                        prepare, submit, follow, status, cancel, collect, release
    remote/backends/__init__.py     "slurm": "remote.backends.slurm:SlurmBackend",
    console.toml (optional)         [backends.slurm] partition = "gpu"   -> context.options

and ``console run --checklist retrain --backend slurm`` trains there; the launch, sync and
terminate steps end SKIPPED when it `MANAGES_INSTANCES`. The conformance test
(``tests/remote/test_backend_conformance.py``) runs over every registered backend.

Errors are `remote.errors` types with one-line messages: a job that fails inside is not
an exception of `follow` (it returns a FAILED status with the reason); a backend that
cannot be reached or refuses a request raises.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from remote.providers.aws_client import AwsTarget
    from remote.storage import ArtifactStore

_JOB_NAME = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$")
"""SageMaker's training-job name rule (also valid for Batch and as a file name)."""


def check_job_name(value: str) -> str:
    """A job name every backend accepts: letters, digits and inner hyphens, at most 63."""
    if not isinstance(value, str) or not _JOB_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a job name (letters, digits and hyphens, at most 63, "
            "starting and ending with a letter or digit)"
        )
    return value


class BackendCapability(str, enum.Enum):
    """What a backend does by itself; checked instead of backend names."""

    MANAGES_INSTANCES = "manages-instances"
    """The service starts and stops its own machines: no launch, sync or terminate step."""
    RECOVERS_SPOT = "recovers-spot"
    """A reclaimed spot machine is replaced and the job resumed from its checkpoints by the service."""
    RUNS_ARRAYS = "runs-arrays"
    """One submission runs many children (``JobSpec.array_size``)."""


class JobPhase(str, enum.Enum):
    """Where a job is. ``secondary`` in `JobStatus` carries the service's finer state."""

    PENDING = "pending"
    """Accepted, not started (queued, waiting for capacity)."""
    STARTING = "starting"
    """Machines or containers are being prepared."""
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    """Ended and wrote its artifacts; the only phase `collect` accepts."""
    FAILED = "failed"
    """Ended with an error (also: MaxRuntimeExceeded, MaxWaitTimeExceeded); ``reason`` says why."""
    STOPPED = "stopped"
    """Stopped on request before it finished: never treated as done."""

    @property
    def finished(self) -> bool:
        return self in (JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.STOPPED)


@dataclass(frozen=True)
class RunPlan:
    """What `prepare` needs to know about the run."""

    run_id: str
    instance_type: str
    alternative_types: tuple[str, ...] = ()
    budget_usd: float = 10.0
    max_runtime_s: int = 4 * 3600
    inputs: Mapping[str, Path | str] = field(default_factory=dict)
    """Channel -> local file or folder the jobs will read (a backend that can, e.g. batch, also
    takes an ``s3://`` URL string for an input already in its bucket)."""
    units: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prepared:
    summary: str
    outputs: Mapping[str, Any] = field(default_factory=dict)
    """What later verbs (and the checklist's later steps) need, JSON-able."""


@dataclass(frozen=True)
class JobSpec:
    """One training job. ``name`` is the idempotency key within the run."""

    run_id: str
    name: str
    family: str
    units: tuple[str, ...]
    """Symbols (or model names) the job trains; an array job shards them over its children."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """The family's hyperparameters and the ``costs`` / ``gates`` sections."""
    inputs: Mapping[str, Path | str] = field(default_factory=dict)
    instance_type: str = ""
    max_runtime_s: int = 4 * 3600
    spot: bool = True
    max_wait_s: int | None = None
    """Managed spot: how long to wait for capacity and interruptions, at least ``max_runtime_s``."""
    array_size: int = 1
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_job_name(self.name)
        if self.max_runtime_s <= 0:
            raise ValueError("max_runtime_s must be positive")
        if self.max_wait_s is not None and self.max_wait_s < self.max_runtime_s:
            raise ValueError(f"max_wait_s ({self.max_wait_s}) is below max_runtime_s ({self.max_runtime_s})")
        if self.array_size < 1:
            raise ValueError("array_size must be at least 1")


@dataclass(frozen=True)
class JobRef:
    """What identifies a submitted job; stored in the train step's outputs (JSON)."""

    backend: str
    name: str
    job_id: str
    run_id: str
    data: Mapping[str, Any] = field(default_factory=dict)
    """The backend's own coordinates (ARN, array job id, host), JSON-able."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "JobRef":
        return cls(
            str(raw["backend"]), str(raw["name"]), str(raw["job_id"]), str(raw["run_id"]), dict(raw.get("data") or {})
        )


GUARD_REFUSED = "guard-refused"
"""`JobStatus.secondary` of a job whose host or container refused to train (the training guard:
no lease, or not where the console put it); the console reports it as a guard refusal (exit 3)."""


@dataclass(frozen=True)
class JobStatus:
    ref: JobRef
    phase: JobPhase
    secondary: str = ""
    """The service's own state (SageMaker's SecondaryStatus, Batch's statusReason...)."""
    reason: str = ""
    """Why it failed or stopped, in one line (the service's failure reason, ``output/failure``)."""
    started_at: float | None = None
    ended_at: float | None = None
    training_s: float | None = None
    billable_s: float | None = None
    """Billable seconds (managed spot bills less than it trains: the saving)."""
    children: Mapping[str, int] = field(default_factory=dict)
    """Array jobs: how many children in each phase."""


@dataclass(frozen=True)
class JobEvent:
    """One thing a job said: an epoch, an episode, a unit done or failed, a state change, a log line."""

    job: str
    kind: str
    """``epoch``, ``episode``, ``done``, ``error``, ``state`` or ``log``."""
    message: str
    unit: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Collected:
    version: str
    """The artifact store's version the job's artifacts now are."""
    files: int
    bytes: int
    where: str


EventSink = Callable[[JobEvent], None]


@dataclass(frozen=True)
class BackendContext:
    """What the console hands a backend it builds (``Backend(context)``); each takes what it needs."""

    run_id: str = ""
    """The run the backend works for (empty for a backend built outside a run: ``console`` commands)."""
    store: "ArtifactStore | None" = None
    """The artifact store `collect` verifies artifacts into (None when the profile has none)."""
    aws: "Callable[[], AwsTarget] | None" = None
    """Where boto3 goes (the sandbox's moto, or AWS), built on first call."""
    hosts: Any = None
    """For backends that run on hosts the console leases (``ssh``): a `remote.backends.ssh.HostPool`."""
    work_dir: Path | None = None
    """Local scratch space (staging of artifacts on their way to the store)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The ``[backends.<name>]`` settings section."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("remote.backends"))
    should_stop: Callable[[], bool] = lambda: False
    """True once the operator cancelled: long waits end early."""


@runtime_checkable
class TrainingBackend(Protocol):
    """Where a training job runs. See the module docstring for the verbs."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[BackendCapability]]

    def prepare(self, plan: RunPlan) -> Prepared: ...

    def submit(self, spec: JobSpec) -> JobRef: ...

    def follow(self, ref: JobRef, on_event: EventSink, *, should_stop: Callable[[], bool]) -> JobStatus: ...

    def status(self, ref: JobRef) -> JobStatus: ...

    def cancel(self, ref: JobRef) -> JobStatus: ...

    def collect(self, ref: JobRef, dest: Path) -> Collected: ...

    def release(self, run_id: str) -> tuple[str, ...]: ...


class BackendClass(Protocol):
    """A registered backend's class: its name and capabilities, and built from a `BackendContext`."""

    name: str
    capabilities: frozenset[BackendCapability]

    def __call__(self, context: BackendContext) -> TrainingBackend: ...
