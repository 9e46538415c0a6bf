"""The ``train`` checklist step: the hybrid scheduler, detached on the leased host, followed live.

What it promises:
- it never trains here: it refuses to dispatch to this machine (a loopback address or
  the same machine id) unless the profile is the sandbox, and the host itself refuses
  without the lease the sync step wrote (training/guard.py);
- the scheduler runs detached (``python -m training.scheduler``), so a dropped SSH
  connection or a dead console does not stop it; a resumed step follows the job that is
  already running instead of starting a second one, and a rerun after the job ended
  resumes from the scheduler's ledger and the checkpoints;
- its JSON progress lines arrive through the runner's tail (reconnecting on drops, no
  line lost or repeated) and become ``train.progress`` events
  (data: symbol, epoch, epochs, loss, val_loss, val_metric) for the front ends;
- each epoch's checkpoint leaves the host as soon as its progress line arrives, verified,
  into the artifact store under the run's prefix (`console.steps.checkpoint_shelf`);
- a host lost mid-training (the provider reports it shutting down or terminated, after a
  spot interruption notice or not) is replaced through the launch step's own path, at
  most ``max_relaunches`` times per run: the replacement gets code, features, lease and
  the stored checkpoints, and the job resumes from the last copied epoch
  (`console.steps.replacement`); the launch step's outputs then name the replacement, so
  upload, terminate and the watchdog find it;
- it ends with a per-symbol table of test metrics against both baselines.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from console.checklist.step import Step, StepContext, StepResult, register
from console.errors import GuardRefused, Interrupted, StepFailed
from console.steps.checkpoint_shelf import CheckpointShelf
from console.steps.params import LaunchParams, TrainParams
from console.steps.replacement import (
    HostLost,
    HostWatch,
    lost_reason,
    relaunches_so_far,
    replace_lost_instance,
    until_reachable,
)
from remote.errors import HostUnreachable
from remote.ssh import JobState

JOB_PREFIX = "train-"


def is_this_machine(host: str) -> bool:
    """True when ``host`` names this machine: loopback, or an address of one of our interfaces."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    addresses = {info[4][0] for info in infos}
    if any(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        return True
    try:
        own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except socket.gaierror:
        own = set()
    return bool(addresses & own)


MODEL_SHAPE = ("hidden_size", "num_layers", "sample_stride", "weight_decay")
"""Training settings a checklist may set; unset ones keep the trainer's defaults."""


def train_config(ctx: StepContext) -> dict[str, Any]:
    """The scheduler's config file: training settings, trading costs, promotion gates, features."""
    p = ctx.params
    settings = ctx.settings
    return {
        "train": {"epochs": p.epochs, "window": p.window, "horizon": p.horizon, "threshold": p.threshold,
                  **{k: getattr(p, k) for k in MODEL_SHAPE if getattr(p, k) is not None}},
        "costs": settings.training.costs,
        "gates": settings.training.promotion_gates,
        "features": {"multi_timeframe_symbols": list(settings.features.multi_timeframe_symbols)},
    }


class TrainStepParams(TrainParams, LaunchParams):
    """The train step's parameters: the training, plus what a replacement instance is
    launched with (the launch step's own parameters) and how many replacements are allowed."""

    max_relaunches: int = Field(2, ge=0, le=10)
    """Replacement instances the run may launch when its host is lost during training."""
    force: bool = False
    """Retrain symbols that already succeeded, from scratch (``console train remote --force``)."""


@dataclass
class _Progress:
    """What the step has seen of the job, across hosts (a replacement continues the count)."""

    epochs: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)


@register
class Train(Step):
    """Train one LSTM per symbol on the leased instance; stream per-symbol progress."""

    name = "train"
    Params = TrainStepParams

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        return (f"train {len(p.symbols)} per-coin LSTMs ({p.epochs} epochs, window {p.window}, horizon {p.horizon}, "
                f"{p.mode} up to {p.max_concurrent} at once) detached on the leased instance, following its log; "
                f"checkpoints copied off the host each epoch, up to {p.max_relaunches} replacement instance(s) "
                f"if the host is lost")

    def preflight(self, ctx: StepContext) -> None:
        coordinates = ctx.output_of("launch")
        host = str(coordinates.get("host") or "")
        if not host:
            raise StepFailed("no instance to train on", hint="run the launch step first")
        if not ctx.settings.is_sandbox and is_this_machine(host):
            raise GuardRefused(
                f"refusing to train locally: {host} is this machine and the profile is {ctx.settings.profile}",
                hint="train on a leased GPU instance",
            )
        synced = ctx.output_of("sync")
        if not synced.get("lease_path"):
            raise GuardRefused("refusing to train locally: the instance holds no lease for this run",
                               hint="run the sync step first")
        if not ctx.settings.is_sandbox:
            from training.guard import machine_id

            if synced.get("host_kind") == "static" and coordinates.get("instance_id") == machine_id():
                raise GuardRefused("refusing to train locally: the static host has this machine's id")

    def run(self, ctx: StepContext) -> StepResult:
        p = ctx.params
        seen = _Progress()
        shelf = _checkpoint_shelf(ctx)
        force = p.force
        fresh_host = False
        while True:
            coordinates = ctx.output_of("launch")
            provider = _spot_provider(ctx, coordinates)
            lost_id = str(coordinates.get("instance_id") or "")
            try:
                if fresh_host:
                    return until_reachable(ctx, lambda: _train_on(ctx, coordinates, provider, shelf, seen, force))
                return _train_on(ctx, coordinates, provider, shelf, seen, force)
            except HostLost as lost:
                lost_id, why = lost.instance_id, lost.why
            except HostUnreachable:  # SSH gave up: lost only if the provider says so
                why = _lost_reason_quietly(ctx, provider, lost_id)
                if why is None:
                    raise
            done = relaunches_so_far(ctx)
            ctx.emit("instance.lost", f"instance {lost_id} lost during training: {why}", instance_id=lost_id,
                     reason=why, relaunches=done, max_relaunches=p.max_relaunches)
            if provider is None or done >= p.max_relaunches:
                raise StepFailed(
                    f"instance {lost_id} was lost during training ({why}) after {done} replacement(s)",
                    hint="raise max_relaunches in the checklist, then `console resume`" if provider is not None
                    else "bring the host back, then `console resume`")
            replace_lost_instance(ctx, provider, lost_id, why)
            # The replacement starts from the stored checkpoints, never from scratch.
            force, fresh_host = False, True


def _train_on(ctx: StepContext, coordinates: dict[str, Any], provider: Any, shelf: CheckpointShelf | None,
              seen: _Progress, force: bool) -> StepResult:
    """Run (or follow) the scheduler on one host until it ends; `HostLost` if the host goes."""
    from console.steps.cloud_sync import RemoteLayout, ssh_runner

    synced = ctx.output_of("sync")
    layout = RemoteLayout.of(coordinates)
    p = ctx.params
    instance_id = str(coordinates.get("instance_id") or "")
    job = f"{JOB_PREFIX}{ctx.run_id}"
    code_dir = synced.get("remote_code_dir") or layout.code
    artifacts = synced.get("remote_artifacts_dir") or layout.artifacts
    features = synced.get("remote_features_dir") or layout.features
    command = [
        "python3", "-m", "training.scheduler",
        "--symbols", ",".join(p.symbols), "--features-dir", _relative(features, code_dir),
        "--out", _relative(artifacts, code_dir), "--mode", p.mode, "--max-concurrent", str(p.max_concurrent),
        "--config", "train-config.json", "--lease", ".rc-lease.json",
    ]
    watch = HostWatch(ctx, provider, instance_id) if provider is not None else None
    if watch is not None:
        watch.check(force=True)  # a host already gone is replaced before any SSH to it

    def sleep(seconds: float) -> None:
        if ctx.cancelled.wait(seconds):
            raise Interrupted(f"step {ctx.step_name} was cancelled")

    def on_line(line: str) -> None:
        event = _json_object(line)
        kind = event.get("event") if event else None
        symbol = str(event.get("symbol", "")) if event else ""
        if kind == "epoch" and shelf is not None:
            # Copied before the line is shown: an epoch the operator sees is safe off the host.
            _shelve(ctx, shelf, runner, artifacts, symbol)
        ctx.log.info("%s", line)
        if kind == "epoch":
            seen.epochs[symbol] = event
            ctx.emit("train.progress", f"{symbol} epoch {event.get('epoch')}/{event.get('epochs')}",
                     **{k: event.get(k) for k in ("symbol", "epoch", "epochs", "loss", "val_loss", "val_metric")})
            finished = sum(int(e.get("epoch") or 0) for e in seen.epochs.values())
            ctx.progress(finished, p.epochs * len(p.symbols), f"{symbol} epoch {event.get('epoch')}")
        elif kind == "done":
            seen.done[symbol] = event
        elif kind == "summary":
            seen.done["__summary__"] = event

    with ssh_runner(ctx.settings, coordinates, sleep=watch or sleep) as runner:
        if watch is not None:
            watch.runner = runner
        status = runner.job_status(job)
        before = ctx.output_of("train")
        offset = int(before.get("log_offset") or 0) if before.get("instance_id") == instance_id else 0
        if status.state is JobState.RUNNING:
            ctx.log.info("following the training job already running on %s (pid %s)", runner.target.where, status.pid)
        else:
            if status.state is JobState.ABSENT:
                # A host that never ran this job: a replacement (or the first start). It gets
                # the code, data and lease if it lacks them, and the checkpoints kept off-host.
                _ensure_synced(ctx, runner, coordinates, layout)
                if shelf is not None and not force:
                    shelf.restore_to_host(runner, artifacts, list(p.symbols))
            if force and shelf is not None:
                shelf.forget(list(p.symbols))
            runner.write_text(f"{code_dir}/train-config.json", json.dumps(train_config(ctx), indent=2) + "\n")
            # A finished job from an earlier attempt is replaced: the scheduler's ledger
            # skips symbols that finished and resumes the rest from their checkpoints.
            started = command + (["--force"] if force else [])
            status = runner.run_detached(started, job, cwd=code_dir, replace=status.finished)
            offset = 0
            ctx.log.info("started %s on %s", " ".join(shlex.quote(c) for c in started), runner.target.where)
        try:
            result = runner.follow_job(job, on_line, offset=offset,
                                       on_reconnect=lambda n: ctx.log.warning("SSH dropped; reconnected (%d)", n))
        except Interrupted:
            ctx.log.warning("cancelled: stopping the training job on the instance")
            try:
                runner.cancel_job(job, "TERM")
            finally:
                raise
        final = result.status
        if watch is not None and not (final.state is JobState.EXITED and final.exit_code == 0):
            # Killed by a signal or gone without an exit code: give the provider a moment to
            # say whether the host itself is going (spot interruption, shutdown).
            signalled = final.state is not JobState.EXITED or (final.exit_code or 0) >= 128
            why = watch.wait_for_loss(20.0 if signalled else 0.0)
            if why is not None:
                raise HostLost(instance_id, why)
        summary = _read_summary(runner, artifacts)
        metrics = {s: _read_metrics(runner, artifacts, row.get("model_dir")) for s, row in
                   ((r["symbol"], r) for r in summary.get("symbols", []))} if summary else {}

    exit_code = final.exit_code
    if final.state is not JobState.EXITED:
        raise StepFailed(f"the training job on the instance {final.state.value} without an exit code",
                         hint="see the step log; `console resume` continues from the checkpoints")
    if exit_code == 3:
        raise GuardRefused("the instance refused to train: " + _last_error(seen.done, summary),
                           hint="the lease is missing, expired or for another host; rerun sync")
    table = _table(summary, metrics)
    if exit_code != 0 or not summary:
        failed = [r["symbol"] for r in summary.get("symbols", []) if r.get("state") != "succeeded"] if summary else []
        why = f"training failed for {', '.join(failed)}" if failed else f"the scheduler exited {exit_code}"
        return StepResult.failed(why, details={"table": table, "summary": summary})
    promoted = summary.get("promoted", 0)
    replaced = relaunches_so_far(ctx)
    on = f" on replacement instance {instance_id}" if replaced else ""
    return StepResult.ok(
        f"trained {summary['succeeded']} of {len(p.symbols)} symbols in {summary.get('seconds', 0):.0f}s{on}; "
        f"{promoted} promoted to champion",
        details={"table": table, "summary": summary, "relaunches": replaced},
        remote_artifacts_dir=artifacts, job=job, log_offset=result.offset, reconnects=result.reconnects,
        instance_id=instance_id, relaunches=replaced,
    )


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _shelve(ctx: StepContext, shelf: CheckpointShelf, runner: Any, artifacts: str, symbol: str) -> None:
    """Copy the symbol's new checkpoint off the host; a failure waits for the next epoch."""
    try:
        epoch = shelf.save_from_host(runner, artifacts, symbol)
    except Exception as exc:  # never let a copy break the log follow (it would repeat lines)
        ctx.log.warning("could not copy %s's checkpoint off the host (%s); trying again at the next epoch",
                        symbol, exc)
        return
    if epoch:
        ctx.log.info("%s: checkpoint of epoch %d kept in %s", symbol, epoch,
                     f"{shelf.store.describe()}{shelf.pointer_key(symbol).rsplit('/', 1)[0]}/")


def _checkpoint_shelf(ctx: StepContext) -> CheckpointShelf | None:
    """The run's checkpoint shelf in the artifact store, or None (with a warning) without one."""
    from console.steps.cloud_sync import artifact_store

    try:
        store = artifact_store(ctx.settings)
    except Exception as exc:  # no bucket configured: training still runs, checkpoints stay on the host
        ctx.log.warning("checkpoints stay on the host only (no artifact store: %s)", exc)
        return None
    return CheckpointShelf(store, ctx.run_id, Path(ctx.run_dir) / "checkpoints", ctx.log)


def _spot_provider(ctx: StepContext, coordinates: dict[str, Any]) -> Any:
    """The provider that can say the instance is gone and launch another (EC2), else None."""
    if coordinates.get("provider") != "ec2":
        return None
    from console.steps.cloud import cloud_provider

    try:
        return cloud_provider(ctx.settings)
    except Exception as exc:  # training goes on; only a lost host could not be replaced
        ctx.log.warning("cannot watch the instance through the provider: %s", exc)
        return None


def _lost_reason_quietly(ctx: StepContext, provider: Any, instance_id: str) -> str | None:
    if provider is None or not instance_id:
        return None
    try:
        return lost_reason(provider, instance_id)
    except Exception as exc:
        ctx.log.warning("could not ask the provider about %s: %s", instance_id, exc)
        return None


def _ensure_synced(ctx: StepContext, runner: Any, coordinates: dict[str, Any], layout: Any) -> None:
    """Sync code, features and the lease to this host unless its lease is already for it."""
    from console.steps.cloud_sync import Sync

    text = runner.read_text(layout.lease)
    lease = _json_object(text) if text else None
    if lease and (lease.get("host_kind") == "static" or lease.get("instance_id") == coordinates.get("instance_id")):
        return
    ctx.log.info("syncing code, features and the lease to %s", coordinates.get("instance_id"))
    result = Sync().run(ctx)
    ctx.state.rewrite_step_outputs(ctx.run_id, "sync", outputs=result.outputs, summary=result.summary,
                                   details=result.details,
                                   message=f"sync: {coordinates.get('instance_id')} (replacement) {result.summary}")


def _relative(path: str, base: str) -> str:
    """``path`` as seen from ``base`` when both are under the same remote root."""
    prefix = base.rsplit("/", 1)[0] + "/"
    return "../" + path[len(prefix):] if path.startswith(prefix) else path


def _read_summary(runner: Any, artifacts: str) -> dict[str, Any]:
    text = runner.read_text(f"{artifacts}/summary.json")
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def _read_metrics(runner: Any, artifacts: str, model_dir: str | None) -> dict[str, Any]:
    if not model_dir:
        return {}
    path = model_dir if model_dir.startswith("/") else f"{artifacts}/{model_dir}"
    for candidate in (f"{path}/metrics.json", f"{artifacts}/{model_dir.split('artifacts/')[-1]}/metrics.json"):
        try:
            text = runner.read_text(candidate)
        except Exception:  # an unreadable file only thins the table
            text = None
        if text:
            try:
                return json.loads(text)
            except ValueError:
                return {}
    return {}


def _last_error(done: dict[str, Any], summary: dict[str, Any]) -> str:
    rows = summary.get("symbols", []) if summary else []
    for row in rows:
        if row.get("why"):
            return str(row["why"])
    return "see the step log"


def _table(summary: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-symbol test metrics against the two baselines, for the run summary."""
    rows = []
    for row in summary.get("symbols", []) if summary else []:
        m = metrics.get(row["symbol"], {})
        model = m.get("model", {})
        base = m.get("baselines", {})
        after = model.get("after_cost", {})
        rows.append([
            row["symbol"], row.get("state"), row.get("last_epoch"),
            model.get("accuracy"), base.get("majority", {}).get("accuracy"), base.get("last_move", {}).get("accuracy"),
            model.get("auc"), after.get("net_return"), "yes" if row.get("promoted") else "no",
            row.get("why") or "",
        ])
    return {
        "title": "per-symbol test metrics (model against baselines)",
        "columns": ["symbol", "state", "epochs", "accuracy", "majority", "last move", "AUC", "net after cost",
                    "champion", "why"],
        "rows": rows,
    }
