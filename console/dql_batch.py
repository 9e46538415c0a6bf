"""`console dql submit --backend batch`: the deep-Q agent's full workflow as one AWS Batch job.

Every (data file, agent type) pair is one experiment; the experiments are one job (an array
job when there are several) of the dql job definition, whose command carries the seed's
``Ref::agent_type``, ``Ref::data_file``, ``Ref::experiment_name`` and ``Ref::episodes``
(`remote.backends.batch_dql`). Each child trains, judges and reports its experiment in the
container (`training.container.dql`). Here: the data files are checked and uploaded, the
job submitted and followed (state, episodes and their reward), then collected: every file
of every model and report checked against its ``sha256.txt``, the version put in the
artifact store, the models added to the models root, passing ones made champion (the gate
is the family's, unchanged), the reports put in ``results/<experiment>/``.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

from console.errors import ConsoleError

if TYPE_CHECKING:  # pragma: no cover
    from console.app import App


@dataclass(frozen=True)
class Planned:
    """One experiment: a data file (checked, its symbol known) and an agent type."""

    name: str
    agent_type: str
    data_file: Path
    symbol: str


def plan_experiments(experiment: str, agent_types: Sequence[str], files: Sequence[tuple[Path, str]]) -> list[Planned]:
    """Every data file with every agent type; named ``experiment`` when alone, else suffixed."""
    pairs = [(path, symbol, agent) for path, symbol in files for agent in dict.fromkeys(agent_types)]
    if len(pairs) == 1:
        path, symbol, agent = pairs[0]
        return [Planned(experiment, agent, path, symbol)]
    out: list[Planned] = []
    for path, symbol, agent in pairs:
        name = f"{experiment}-{agent}-{symbol}"
        if any(p.name == name for p in out):
            name = f"{name}-{len(out)}"
        out.append(Planned(name[:64], agent, path, symbol))
    return out


def submit_on_batch(
    app: "App",
    planned: list[Planned],
    *,
    episodes: int,
    agent: dict[str, Any],
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Submit, follow and collect the experiments; the collected rows (one per experiment)."""
    from remote.backends.base import JobPhase, JobSpec
    from remote.backends.batch_dql import DqlBatchBackend

    run_id = time.strftime("dql-%Y%m%dT%H%M%SZ-", time.gmtime()) + secrets.token_hex(2)
    # The batch backend's settings (bucket, queue, image) as `Resources.backend` builds them.
    backend = DqlBatchBackend(cast(Any, app.resources.backend("batch", run_id=run_id)).context)
    backend.prepare_queue()
    experiments = [
        {
            "agent_type": p.agent_type,
            "data_file": backend.upload_data_file(run_id, i, p.data_file, p.symbol),
            "experiment_name": p.name,
            "episodes": episodes,
        }
        for i, p in enumerate(planned)
    ]
    spec = JobSpec(
        run_id=run_id,
        name=re.sub(r"[^A-Za-z0-9-]", "-", run_id)[:63],
        family="dql",
        units=tuple(p.name for p in planned),
        params={"experiments": experiments, "agent": agent, "costs": dict(app.settings.training.costs)},
        array_size=len(planned),
        max_runtime_s=4 * 3600,
    )
    ref = backend.submit(spec)
    kind = f"an array of {spec.array_size}" if spec.array_size > 1 else "one job"
    echo(f"run {run_id}: Batch job {ref.job_id} ({kind}) on queue {backend.queue}, definition {backend.dql_definition}")
    status = backend.follow(ref, lambda e: _show(e, echo), should_stop=lambda: False)
    if status.phase is not JobPhase.SUCCEEDED and not status.children.get(JobPhase.SUCCEEDED.value):
        raise ConsoleError(f"Batch job {ref.name} ended {status.phase.value}: {status.reason or status.secondary}")
    staging = app.resources.paths.runs / run_id / "batch-collected"
    shutil.rmtree(staging, ignore_errors=True)
    collected = backend.collect(ref, staging)
    echo(f"collected {collected.files} files (each sha256 checked) as version {collected.version} in {collected.where}")
    rows = json.loads((staging / "summary.json").read_text())["units"]
    for row in rows:
        if row.get("state") == "succeeded":
            row["model"] = str(_add_model(staging / row["model_dir"], app.resources.paths.models, row))
            row["report"] = str(_place_report(staging / row["report_dir"], Path("results") / row["experiment"]))
    return rows


def _show(event: Any, echo: Callable[[str], None]) -> None:
    data = dict(event.data or {})
    if event.kind == "episode":
        reward = f", reward {data['reward']:+.5f}" if "reward" in data else ""
        echo(f"  {data.get('experiment', event.unit)}: episode {data.get('step')}/{data.get('steps')}{reward}")
    elif event.kind == "state":
        echo(f"  job {event.message}")
    elif event.kind == "start":
        echo(f"  {event.unit}: started ({data.get('agent_type')}, attempt {data.get('attempt')})")
    elif event.kind == "done":
        resumed = f" (resumed from episode {data['resumed_from']})" if data.get("resumed_from") else ""
        echo(f"  {data.get('experiment', event.unit)}: {data.get('state')}{resumed}")


def _add_model(source: Path, root: Path, row: dict[str, Any]) -> Path:
    """A collected model folder into the models root; champion only when its verdict passed."""
    from training import registry

    parent = root / "models" / str(row["unit"])
    parent.mkdir(parents=True, exist_ok=True)
    target = parent / source.name
    n = 1
    while target.exists():
        n += 1
        target = parent / f"{source.name}-{n}"
    shutil.copytree(source, target)
    verdict = json.loads((target / "verdict.json").read_text())
    features = json.loads((target / "features.json").read_text())
    published = registry.PublishedModel(
        str(row["unit"]), target, str(row.get("timestamp") or source.name), bool(verdict["passed"]),
        tuple(row.get("reasons") or ()),
    )  # fmt: skip
    registry.promote_if_passed(root, published, feature_hash=str(features.get("feature_hash", "")))
    return target


def _place_report(source: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, dest)
    return dest / "report.html"
