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
- it ends with a per-symbol table of test metrics against both baselines.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import socket
from typing import Any

from console.checklist.step import Step, StepContext, StepResult, register
from console.errors import GuardRefused, Interrupted, StepFailed
from console.steps.params import TrainParams

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


def train_config(ctx: StepContext) -> dict[str, Any]:
    """The scheduler's config file: training settings, trading costs, promotion gates, features."""
    p = ctx.params
    settings = ctx.settings
    return {
        "train": {"epochs": p.epochs, "window": p.window, "horizon": p.horizon, "threshold": p.threshold},
        "costs": settings.training.costs,
        "gates": settings.training.promotion_gates,
        "features": {"multi_timeframe_symbols": list(settings.features.multi_timeframe_symbols)},
    }


@register
class Train(Step):
    """Train one LSTM per symbol on the leased instance; stream per-symbol progress."""

    name = "train"
    Params = TrainParams

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        return (f"train {len(p.symbols)} per-coin LSTMs ({p.epochs} epochs, window {p.window}, horizon {p.horizon}, "
                f"{p.mode} up to {p.max_concurrent} at once) detached on the leased instance, following its log")

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
        from console.steps.cloud_sync import RemoteLayout, ssh_runner

        coordinates = ctx.output_of("launch")
        synced = ctx.output_of("sync")
        layout = RemoteLayout.of(coordinates)
        p = ctx.params
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
        progress: dict[str, dict[str, Any]] = {}
        done: dict[str, dict[str, Any]] = {}

        def on_line(line: str) -> None:
            ctx.log.info("%s", line)
            try:
                event = json.loads(line)
            except ValueError:
                return
            if not isinstance(event, dict):
                return
            kind = event.get("event")
            symbol = str(event.get("symbol", ""))
            if kind == "epoch":
                progress[symbol] = event
                ctx.emit("train.progress", f"{symbol} epoch {event.get('epoch')}/{event.get('epochs')}",
                         **{k: event.get(k) for k in ("symbol", "epoch", "epochs", "loss", "val_loss", "val_metric")})
                finished = sum(int(e.get("epoch") or 0) for e in progress.values())
                ctx.progress(finished, p.epochs * len(p.symbols), f"{symbol} epoch {event.get('epoch')}")
            elif kind == "done":
                done[symbol] = event
            elif kind == "summary":
                done["__summary__"] = event

        def sleep(seconds: float) -> None:
            if ctx.cancelled.wait(seconds):
                raise Interrupted(f"step {ctx.step_name} was cancelled")

        with ssh_runner(ctx.settings, coordinates, sleep=sleep) as runner:
            runner.write_text(f"{code_dir}/train-config.json", json.dumps(train_config(ctx), indent=2) + "\n")
            status = runner.job_status(job)
            if status.state.value == "running":
                ctx.log.info("following the training job already running on %s (pid %s)", runner.target.where, status.pid)
            else:
                # A finished job from an earlier attempt is replaced: the scheduler's ledger
                # skips symbols that finished and resumes the rest from their checkpoints.
                status = runner.run_detached(command, job, cwd=code_dir, replace=status.finished)
                ctx.log.info("started %s on %s", " ".join(shlex.quote(c) for c in command), runner.target.where)
            offset = int(ctx.output_of("train").get("log_offset") or 0)
            try:
                result = runner.follow_job(job, on_line, offset=offset,
                                           on_reconnect=lambda n: ctx.log.warning("SSH dropped; reconnected (%d)", n))
            except Interrupted:
                ctx.log.warning("cancelled: stopping the training job on the instance")
                try:
                    runner.cancel_job(job, "TERM")
                finally:
                    raise
            summary = _read_summary(runner, artifacts)
            metrics = {s: _read_metrics(runner, artifacts, row.get("model_dir")) for s, row in
                       ((r["symbol"], r) for r in summary.get("symbols", []))} if summary else {}

        exit_code = result.status.exit_code
        if result.status.state.value != "exited":
            raise StepFailed(f"the training job on the instance {result.status.state.value} without an exit code",
                             hint="see the step log; `console resume` continues from the checkpoints")
        if exit_code == 3:
            raise GuardRefused("the instance refused to train: " + _last_error(done, summary),
                               hint="the lease is missing, expired or for another host; rerun sync")
        table = _table(summary, metrics)
        if exit_code != 0 or not summary:
            failed = [r["symbol"] for r in summary.get("symbols", []) if r.get("state") != "succeeded"] if summary else []
            why = f"training failed for {', '.join(failed)}" if failed else f"the scheduler exited {exit_code}"
            return StepResult.failed(why, details={"table": table, "summary": summary})
        promoted = summary.get("promoted", 0)
        return StepResult.ok(
            f"trained {summary['succeeded']} of {len(p.symbols)} symbols in {summary.get('seconds', 0):.0f}s; "
            f"{promoted} promoted to champion",
            details={"table": table, "summary": summary},
            remote_artifacts_dir=artifacts, job=job, log_offset=result.offset, reconnects=result.reconnects,
        )


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
