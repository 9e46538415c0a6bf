"""The ``train`` checklist step: the run's units trained by its training backend, followed live.

Generic over backends (`remote.backends`): it prepares the backend, submits one job per
symbol -- or, for a backend that `RUNS_ARRAYS`, one job for every symbol -- follows each
until it ends, and reports a per-symbol table of test metrics against both baselines.
Where the job runs and how a lost machine is recovered is the backend's business (the
``ssh`` backend: detached on the leased host, checkpoints copied off it each epoch, a lost
spot instance replaced at most ``max_relaunches`` times).

What it promises whatever the backend:
- it never trains here: a backend that runs on a host the console leased refuses a host
  that is this machine (a loopback address or the same machine id) unless the profile is
  the sandbox, and the host itself refuses without the lease the sync step wrote
  (training/guard.py);
- submitting is idempotent per run and job: a resumed step follows the job already
  running instead of starting a second one;
- the jobs' progress becomes ``train.progress`` events (data: symbol, epoch, epochs, loss,
  val_loss, val_metric) for the front ends; the operator's Ctrl-C stops the job too.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

from pydantic import Field

from console.checklist.step import Step, StepContext, StepResult, register
from console.errors import GuardRefused, Interrupted, StepFailed
from console.hosts import RunHosts
from console.outputs import LaunchOutputs, SyncOutputs, TrainOutputs
from console.steps.params import LaunchParams, TrainParams
from console.training_jobs import record_ref
from remote.backends import backend_class
from remote.backends.base import (
    GUARD_REFUSED,
    BackendCapability,
    JobEvent,
    JobPhase,
    JobRef,
    JobSpec,
    RunPlan,
    TrainingBackend,
)
from training.features.files import features_folder

FAMILY = "lstm"
"""The model family the retrain checklist trains (`training.families`)."""
MODEL_SHAPE = ("hidden_size", "num_layers", "sample_stride", "weight_decay", "cuda_graph")
"""Training settings a checklist may set; unset ones keep the trainer's defaults."""
TABLE_COLUMNS = [
    "symbol",
    "state",
    "epochs",
    "accuracy",
    "majority",
    "last move",
    "AUC",
    "net after cost",
    "champion",
    "why",
]


def is_this_machine(host: str) -> bool:
    """True when ``host`` names this machine: loopback, or an address of one of our interfaces."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    addresses = {str(info[4][0]) for info in infos}
    if any(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        return True
    try:
        own = {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
    except socket.gaierror:
        own = set()
    return bool(addresses & own)


class TrainStepParams(TrainParams, LaunchParams):
    """The train step's parameters: the training, plus what a replacement instance is
    launched with (the launch step's own parameters) and how many replacements are allowed."""

    max_relaunches: int = Field(2, ge=0, le=10)
    """Replacement instances the run may launch when its host is lost during training."""
    force: bool = False
    """Retrain symbols that already succeeded, from scratch (``console train remote --force``)."""
    wait: bool = True
    """Follow the jobs to their end; False submits them and ends (``console train cloud --no-wait``)."""


def unit_families(p: Any) -> dict[str, list[str]]:
    """Family -> its units, in order: a checklist that trains several families maps each unit to
    one in ``unit_families`` (the investment checklist); otherwise every unit is ``family``'s."""
    mapping = getattr(p, "unit_families", None) or {}
    groups: dict[str, list[str]] = {}
    for symbol in p.symbols:
        groups.setdefault(mapping.get(symbol, p.family), []).append(symbol)
    return groups


def at_once(max_concurrent: int | str) -> str:
    """The plan's words for the hybrid mode's concurrency."""
    if max_concurrent == "auto":
        return "as many at once as the host's GPUs take"
    return f"up to {max_concurrent} at once"


def job_params(ctx: StepContext, family: str | None = None) -> dict[str, Any]:
    """The jobs' params: training settings, trading costs, promotion gates, features, and the schedule."""
    p = ctx.params
    settings = ctx.settings
    family = family or p.family
    if family != FAMILY:
        own = dict(p.family_params)
        if getattr(p, "unit_families", None):  # several families: each has its own table
            own = dict(own.get(family) or {})
        return {
            "train": {k: v for k, v in own.items() if k != "gates"},
            "costs": settings.training.costs,
            "gates": dict(own.get("gates") or {}),
            "features": {},
            "schedule": {"mode": p.mode, "max_concurrent": p.max_concurrent, "force": p.force},
        }
    return {
        "train": {
            "epochs": p.epochs,
            "window": p.window,
            "horizon": p.horizon,
            "threshold": p.threshold,
            **{k: getattr(p, k) for k in MODEL_SHAPE if getattr(p, k) is not None},
        },
        "costs": settings.training.costs,
        "gates": settings.training.promotion_gates,
        "features": {
            "multi_timeframe_symbols": list(settings.features.multi_timeframe_symbols),
            **({"timeframe": p.timeframe} if p.timeframe != "1m" else {}),
        },
        "schedule": {"mode": p.mode, "max_concurrent": p.max_concurrent, "force": p.force},
    }


def feature_inputs(ctx: StepContext) -> dict[str, Path]:
    """The ``features`` channel's folder when the rows are not one-minute ones (their own folder)."""
    if ctx.params.timeframe == "1m":
        return {}
    return {"features": features_folder(ctx.resources.paths.features, ctx.params.timeframe)}


def job_specs(ctx: StepContext, backend: TrainingBackend) -> list[JobSpec]:
    """One job for every symbol when the backend runs arrays, else one job per symbol (per family,
    when the units are of several families)."""
    p = ctx.params
    groups = unit_families(p)
    specs: list[JobSpec] = []
    for family, units in groups.items():
        common: dict[str, Any] = {
            "run_id": ctx.run_id,
            "family": family,
            "params": job_params(ctx, family),
            "instance_type": p.instance_type,
            "max_runtime_s": int(p.max_runtime_hours * 3600),
            "tags": {"run-id": ctx.run_id},
            "inputs": feature_inputs(ctx),
        }
        suffix = f"-{family}" if len(groups) > 1 else ""
        if BackendCapability.RUNS_ARRAYS in backend.capabilities:
            specs.append(
                JobSpec(name=f"train-{ctx.run_id}{suffix}", units=tuple(units), array_size=len(units), **common)
            )
        else:
            specs += [JobSpec(name=f"train-{ctx.run_id}-{s.lower()}", units=(s,), **common) for s in units]
    return specs


@register
class Train(Step):
    """Train one model per symbol through the run's backend; stream per-symbol progress."""

    name = "train"
    Params = TrainStepParams
    Outputs = TrainOutputs

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        capabilities = backend_class(p.backend).capabilities
        where = f"on the {p.backend} backend"
        if BackendCapability.MANAGES_INSTANCES not in capabilities:
            where += ", on the leased instance, following its log"
        if BackendCapability.RECOVERS_SPOT in capabilities and BackendCapability.MANAGES_INSTANCES not in capabilities:
            where += (
                f"; checkpoints copied off the host each epoch, up to {p.max_relaunches} replacement "
                "instance(s) if the host is lost"
            )
        if p.family != FAMILY:
            return f"train {len(p.symbols)} {p.family} model(s) ({p.family_params or 'its defaults'}) {where}"
        return (
            f"train {len(p.symbols)} per-coin LSTMs ({p.epochs} epochs, window {p.window}, horizon {p.horizon}, "
            f"{p.mode} {at_once(p.max_concurrent)}) {where}"
        )

    def preflight(self, ctx: StepContext) -> None:
        if ctx.params.timeframe != "1m" and ctx.params.backend == "ssh":
            raise StepFailed(
                f"timeframe {ctx.params.timeframe} trains on a managed backend only (the ssh host reads "
                "one-minute feature files)",
                hint='use --backend sagemaker, or timeframe = "1m"',
            )
        if BackendCapability.MANAGES_INSTANCES in backend_class(ctx.params.backend).capabilities:
            return  # the service's containers refuse to train without the console's job token
        launched = ctx.output_of("launch", LaunchOutputs)
        host = launched.host if launched else ""
        if not host:
            raise StepFailed("no instance to train on", hint="run the launch step first")
        if not ctx.settings.is_sandbox and is_this_machine(host):
            raise GuardRefused(
                f"refusing to train locally: {host} is this machine and the profile is {ctx.settings.profile}",
                hint="train on a leased GPU instance",
            )
        synced = ctx.output_of("sync", SyncOutputs)
        if synced is None or not synced.lease_path:
            raise GuardRefused(
                "refusing to train locally: the instance holds no lease for this run", hint="run the sync step first"
            )
        if not ctx.settings.is_sandbox and synced.host_kind == "static":
            from training.guard import machine_id

            if launched is not None and launched.instance_id == machine_id():
                raise GuardRefused("refusing to train locally: the static host has this machine's id")

    def run(self, ctx: StepContext) -> StepResult:
        p = ctx.params
        backend = ctx.resources.backend(
            p.backend,
            run_id=ctx.run_id,
            hosts=RunHosts(ctx, max_replacements=p.max_relaunches),
            log=ctx.log,
            should_stop=ctx.cancelled.is_set,
        )
        prepared = backend.prepare(
            RunPlan(
                ctx.run_id,
                p.instance_type,
                (p.alt_instance_type,),
                p.budget_usd,
                int(p.max_runtime_hours * 3600),
                inputs=feature_inputs(ctx),
                units=tuple(p.symbols),
            )
        )
        ctx.log.info("%s", prepared.summary)
        rows: dict[str, list[Any]] = {}
        on_event = _Progress(ctx, rows)
        specs = job_specs(ctx, backend)
        # Jobs of several families run one after the other (a host keeps one job config at a time).
        serial = len({spec.family for spec in specs}) > 1
        managed = BackendCapability.MANAGES_INSTANCES in backend.capabilities

        def submit(spec: JobSpec) -> JobRef:
            ref = backend.submit(spec)
            if managed:  # billed by the service: into the cost ledger
                record_ref(ctx.state, ref, None, sandbox=ctx.settings.is_sandbox)
            return ref

        if serial and not p.wait:
            return StepResult.failed("jobs of several families run one after the other: they must be followed")
        refs: list[JobRef] = [submit(spec) for spec in (specs[:1] if serial else specs)]
        if not p.wait:
            names = ", ".join(r.name for r in refs)
            return StepResult.ok(
                f"submitted {names}; follow with `console train cloud-status {refs[0].name}`",
                outputs=TrainOutputs(backend=p.backend, jobs=[r.to_dict() for r in refs], relaunches=0),
            )
        seconds = 0.0
        for ref in refs:
            status = backend.follow(ref, on_event, should_stop=ctx.cancelled.is_set)
            if managed:
                record_ref(ctx.state, ref, status, sandbox=ctx.settings.is_sandbox)
            seconds += status.training_s or 0.0
            if ctx.cancelled.is_set() and not status.phase.finished:
                ctx.log.warning("cancelled: stopping the training job %s", ref.name)
                try:
                    backend.cancel(ref)
                finally:
                    raise Interrupted(f"step {ctx.step_name} was cancelled")
            if status.phase is not JobPhase.SUCCEEDED:
                if status.secondary == GUARD_REFUSED:
                    raise GuardRefused(
                        status.reason, hint="the lease is missing, expired or for another host; rerun sync"
                    )
                table = _table(rows)
                return StepResult.failed(
                    status.reason or f"training job {ref.name} {status.phase.value}",
                    details={"table": table, "job": status.secondary},
                )
            if serial and len(refs) < len(specs):
                refs.append(submit(specs[len(refs)]))  # the loop follows it next
        leased = BackendCapability.MANAGES_INSTANCES not in backend.capabilities
        relaunches = ctx.instances.replacements(ctx.run_id) if leased else 0
        launched = ctx.output_of("launch", LaunchOutputs)
        on = f" on replacement instance {launched.instance_id}" if relaunches and launched else ""
        trained = sum(1 for r in rows.values() if r[1] == "succeeded")
        promoted = sum(1 for r in rows.values() if r[8] == "yes")
        return StepResult.ok(
            f"trained {trained} of {len(p.symbols)} symbols in {seconds:.0f}s{on}; {promoted} promoted to champion",
            details={"table": _table(rows), "relaunches": relaunches},
            outputs=TrainOutputs(backend=p.backend, jobs=[r.to_dict() for r in refs], relaunches=relaunches),
        )


class _Progress:
    """The backend's events become the step's log lines, events and progress bar."""

    def __init__(self, ctx: StepContext, rows: dict[str, list[Any]]) -> None:
        self.ctx = ctx
        self.rows = rows
        self.epochs: dict[str, int] = {}

    def __call__(self, event: JobEvent) -> None:
        ctx, p = self.ctx, self.ctx.params
        if event.kind == "log":
            ctx.log.info("%s", event.message)
            if event.data.get("secondary"):  # a managed job's state: the TUI's training pane shows it
                for unit in filter(None, event.unit.split(",")):
                    ctx.emit("train.job", event.message, symbol=unit, job=event.job, state=event.data["secondary"])
        elif event.kind == "epoch":
            data = dict(event.data)
            ctx.emit("train.progress", event.message, **data)
            self.epochs[event.unit] = int(data.get("epoch") or 0)
            ctx.progress(
                sum(self.epochs.values()), p.epochs * len(p.symbols), f"{event.unit} epoch {data.get('epoch')}"
            )
        elif event.kind == "state":
            what = str(event.data.get("what") or "state")
            ctx.log.warning("%s", event.message)
            ctx.emit(f"instance.{what}", event.message, **{k: v for k, v in event.data.items() if k != "what"})
        elif event.kind == "done":
            d = event.data
            self.rows[event.unit] = [
                event.unit,
                d.get("state"),
                d.get("epochs"),
                d.get("accuracy"),
                d.get("majority"),
                d.get("last_move"),
                d.get("auc"),
                d.get("net_return"),
                "yes" if d.get("promoted") else "no",
                d.get("why") or "",
            ]
        elif event.kind == "error":
            ctx.log.warning("%s: %s", event.unit, event.message)


def _table(rows: dict[str, list[Any]]) -> dict[str, Any]:
    """Per-symbol test metrics against the two baselines, for the run summary."""
    return {
        "title": "per-symbol test metrics (model against baselines)",
        "columns": TABLE_COLUMNS,
        "rows": list(rows.values()),
    }
