"""The engine on AWS Batch (`remote.backends.batch`), as two array jobs.

- `fetch_on_batch`: each child fetches its own coins' candles (the exchange's rate limit is
  per address, so it is spread over the children's hosts), builds their feature files and
  sends back each coin's encoder moments; the feature files stay in the bucket.
- `train_on_batch`: the heads, each child a shard of coins reading those feature files and
  the shared encoder; collected (every file verified) into the models root.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from console.engine_progress import CoinEvents
from console.engine_work import engine_dir
from console.errors import ConsoleError

if TYPE_CHECKING:  # pragma: no cover
    from console.checklist.step import StepContext


def _job_name(kind: str, run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", f"{kind}-{run_id}")[:63].strip("-")


def fetch_on_batch(
    ctx: "StepContext", symbols: Sequence[str], window: tuple[int, int], fundamentals: Path
) -> tuple[dict[str, dict[str, Any]], str]:
    """Each coin's candles fetched, and its feature file built, by the Batch child whose shard it
    is; its encoder moments into the run's ``moments/`` folder. Each coin's row (``succeeded`` with rows
    and features, or ``skipped``/``failed`` with why) and the ``s3://`` prefix of the feature files."""
    from remote.backends.base import JobPhase, JobSpec, RunPlan
    from remote.backends.batch import BatchBackend

    p = ctx.params
    resources = ctx.resources
    backend = ctx.resources.backend("batch", run_id=ctx.run_id, log=ctx.log)
    assert isinstance(backend, BatchBackend)  # the fetch task is the batch backend's own
    backend.prepare(RunPlan(ctx.run_id, "batch", inputs={"fundamentals": fundamentals}, units=tuple(symbols)))
    spec = JobSpec(
        run_id=ctx.run_id,
        name=_job_name("engine-fetch", ctx.run_id),
        family="gbm",
        units=tuple(symbols),
        params={
            "task": "fetch",
            "market": {"coinbase": resources.market_urls().coinbase},
            "window": {"start": int(window[0]), "end": int(window[1])},
            "features": resources.feature_settings(),
            "split": dict(p.head_params()["split"]),
        },
        inputs={"fundamentals": fundamentals},
        array_size=min(p.children, len(symbols)) or 1,
        max_runtime_s=int(p.symbol_timeout_s * max(1, len(symbols) // max(1, p.children) + 1)),
    )
    ref = backend.submit(spec)
    done: list[str] = []
    errors: list[str] = []

    def relay(e: Any) -> None:
        ctx.log.info("%s %s", e.kind, e.message)
        if e.kind == "error":
            errors.append(f"{e.unit}: {e.data.get('why', '')}" if e.unit else str(e.data.get("why", "")))
        if e.kind == "done" and e.unit and e.unit not in done:
            done.append(str(e.unit))
            ctx.progress(len(done), len(symbols), str(e.unit))

    _record(ctx, ref.job_id)
    try:
        status = backend.follow(ref, relay, should_stop=lambda: ctx.cancelled.is_set())
    finally:
        _record(ctx, ref.job_id)
    ctx.check_cancelled()
    if status.phase is not JobPhase.SUCCEEDED:
        why = f"a child stopped at {errors[-1]}" if errors else status.reason or status.secondary
        raise ConsoleError(f"Batch job {ref.name} ended {status.phase.value}: {why}")
    moments = ctx.run_dir / "moments"  # this run's own: another run's coins never enter its encoder
    shutil.rmtree(moments, ignore_errors=True)
    rows, url = backend.collect_fetched(ref, moments)
    return {unit: _checked_moments(row, moments) for unit, row in rows.items()}, url


def _checked_moments(row: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``row``, failed (and its file removed) when what came back is not its coin's moments:
    loaded without pickle, shapes checked, named for that coin. Caught here, the coin is
    left out with the reason instead of stopping the encoder step later."""
    from training.errors import TrainingError
    from training.families.gbm.moments import CoinMoments

    if row.get("state") != "succeeded":
        return row
    path = folder / f"{row['unit']}.npz"
    try:
        named = CoinMoments.load(path).symbol
    except TrainingError:
        named = ""
    if named == row["unit"]:
        return row
    path.unlink(missing_ok=True)
    return {**row, "state": "failed", "why": "its encoder moments are not that coin's or are malformed"}


def train_on_batch(
    ctx: "StepContext",
    symbols: Sequence[str],
    params: Mapping[str, Any],
    costs: Mapping[str, Any],
    features: "Path | str | None" = None,
    feature_sha256: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The heads as one array job; ``features``: the feature files' folder here, or the ``s3://``
    prefix a fetch job's children uploaded them to (referenced, not copied), with
    ``feature_sha256`` the checksums they recorded: a child trains no coin whose file differs."""
    from remote.backends.base import JobPhase, JobSpec, RunPlan

    p = ctx.params
    backend = ctx.resources.backend("batch", run_id=ctx.run_id, log=ctx.log)
    resources = ctx.resources
    inputs: dict[str, Path | str] = {
        "features": features or resources.paths.features,
        "encoder": engine_dir(resources) / "encoder",
    }
    backend.prepare(RunPlan(ctx.run_id, "batch", inputs=inputs, units=tuple(symbols)))
    name = _job_name("engine", ctx.run_id)
    spec = JobSpec(
        run_id=ctx.run_id,
        name=name,
        family="gbm",
        units=tuple(symbols),
        params={
            **dict(params),
            "costs": dict(costs),
            **({"input_sha256": {"features": dict(feature_sha256)}} if feature_sha256 is not None else {}),
        },
        inputs=inputs,
        array_size=min(p.children, len(symbols)) or 1,
        max_runtime_s=int(p.symbol_timeout_s * max(1, len(symbols) // max(1, p.children) + 1)),
    )
    ref = backend.submit(spec)
    board = CoinEvents(ctx.emit)
    told: dict[str, str] = {}

    def relay(e: Any) -> None:
        """A child's progress lines as the coins' states (a coin runs from its first line to its ``done``)."""
        ctx.log.info("%s %s", e.kind, e.message)
        unit = str(getattr(e, "unit", "") or "")
        if unit in told and told[unit] != "running" or not unit:
            return
        if e.kind == "done":
            state = "done" if e.data.get("state") == "succeeded" else "failed"
            board.state(unit, state, str(e.data.get("why", "")))
            told[unit] = state
        elif unit not in told:
            board.state(unit, "running")
            told[unit] = "running"

    _record(ctx, ref.job_id)
    try:
        status = backend.follow(ref, relay, should_stop=lambda: ctx.cancelled.is_set())
    finally:
        _record(ctx, ref.job_id)
    if status.phase is not JobPhase.SUCCEEDED:
        raise ConsoleError(f"Batch job {ref.name} ended {status.phase.value}: {status.reason or status.secondary}")
    staging = ctx.run_dir / "batch-collected"
    shutil.rmtree(staging, ignore_errors=True)
    backend.collect(ref, staging)
    summary = json.loads((staging / "summary.json").read_text())
    _merge(staging, resources.paths.models)
    for row in summary["units"]:
        state = "done" if row.get("state") == "succeeded" else "failed"
        if told.get(str(row["unit"])) != state:  # its done line was not seen, or collect judged otherwise
            board.state(str(row["unit"]), state, str(row.get("why", "")), row.get("seconds"))
    return {
        str(row["unit"]): {
            "state": "ok" if row.get("state") == "succeeded" else "failed",
            "why": row.get("why", ""),
            "model_dir": row.get("model_dir", ""),
            "passed": bool(row.get("passed")),
            "reasons": list(row.get("reasons") or ()),
            "seconds": float(row.get("seconds") or 0.0),
        }
        for row in summary["units"]
    }


def _record(ctx: "StepContext", job_id: str) -> None:
    """The job's estimated cost in the ledger (`console.batch_ledger`); the watchdog keeps it current."""
    from console.batch_ledger import record_view

    try:
        view = ctx.resources.job_view(job_id)
    except Exception as exc:  # noqa: BLE001 - the ledger is told later by the watchdog; the run goes on
        ctx.log.warning("could not record Batch job %s in the cost ledger: %s", job_id, exc)
        return
    if view is not None:
        record_view(ctx.state, view, seen_by="engine", sandbox=ctx.settings.is_sandbox)


def _merge(source: Path, root: Path) -> None:
    """Model folders and champion pointers from ``source`` into the models root (roster merged)."""
    for folder in sorted((source / "models").glob("*/*")):
        target = root / folder.relative_to(source)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(folder, target)
    for pointer in sorted((source / "champions").glob("*.json")):
        (root / "champions").mkdir(parents=True, exist_ok=True)
        shutil.copy2(pointer, root / "champions" / pointer.name)
    roster_path = root / "roster.json"
    roster = json.loads(roster_path.read_text()) if roster_path.is_file() else {"symbols": {}}
    roster["symbols"].update(json.loads((source / "roster.json").read_text()).get("symbols", {}))
    roster_path.write_text(json.dumps(roster, indent=2, sort_keys=True) + "\n")
