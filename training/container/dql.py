"""The ``dql`` mode: seed 004's ``full-workflow`` (train, evaluate, report) as an AWS Batch job.

The console registers one job definition whose command carries the seed's parameters::

    python -m training.container dql full-workflow --agent-type Ref::agent_type
        --data-file Ref::data_file --experiment-name Ref::experiment_name
        --episodes Ref::episodes --settings Ref::settings

and submits it with ``parameters`` (``console dql submit --backend batch``). Several
experiments are one array job: each parameter is then a comma-separated list and the child
at ``AWS_BATCH_JOB_ARRAY_INDEX`` takes its item (a list of one applies to every child).
The seed's spellings (``--agent_type`` ...) are accepted too.

``--settings`` is an ``s3://`` URL of a JSON object the console wrote: ``job_name`` and
``rc_job_token_sha256`` (the guard, `training.container.check_job_token`, with
``RC_JOB_NAME`` / ``RC_JOB_TOKEN`` in the environment), ``out`` (``s3://bucket/prefix/``),
``costs``, ``params`` (the agent's other settings: episode_length, window, ...) and
``seed``. The data file is an ``s3://`` URL (or a local path, for a host that has it).

What the child writes under ``out`` (the layout `remote.backends.batch` collects):

    checkpoints/<experiment>/episode-<N>.pt       after every checkpoint, then last.json (the
    checkpoints/<experiment>/last.json            pointer); read back first, so a retried
                                                  child on a new host resumes
    experiments/<experiment>/models/<SYM>/<stamp>/  the published agent (sha256.txt last)
    experiments/<experiment>/report/              report.html and its PNGs (sha256.txt last)
    events/<index>.jsonl                          start, episode (reward, epsilon), done
    results/<index>.json                          written last: what the child finished

Every attempt works in a fresh folder (``attempt-<n>``): nothing carries over on the
host's disk, only through ``out``, as on a replacement host.

Exit codes: 0 the experiment ran (a failed one is in the results), 1 the child crashed,
2 bad input, 3 refused by the guard.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from training.container import JOB_NAME_ENVS, TOKEN_ENV
from training.container.batch import BadManifest, Events, S3Place, guarded_job
from training.errors import LocalTrainingRefused, TrainingError, TrainingInputError

AGENT_TYPES = ("dqn", "custom")
_EXPERIMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CHECKPOINT_FILES = ("last.pt", "last.json")
"""The trainer's checkpoint and its record, on the child's disk (`Checkpoints` publishes them)."""
_CHECKPOINT_OBJECT = re.compile(r"episode-[0-9]{6,}\.pt")


@dataclass(frozen=True)
class Experiment:
    agent_type: str
    data_file: str
    name: str
    episodes: int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.container dql", add_help=True)
    parser.add_argument("workflow", choices=("full-workflow",))
    for flag in ("agent-type", "data-file", "experiment-name", "episodes", "settings"):
        parser.add_argument(f"--{flag}", f"--{flag.replace('-', '_')}", dest=flag.replace("-", "_"), required=True)
    return parser


def _items(value: str, what: str, size: int) -> list[str]:
    items = [v.strip() for v in str(value).split(",")]
    if any(not v for v in items):
        raise BadManifest(f"--{what} {value!r} has an empty item")
    if len(items) not in (1, size):
        raise BadManifest(f"--{what} lists {len(items)} items for an array of {size}; give 1 or {size}")
    return items if len(items) == size else items * size


def pick_experiment(args: argparse.Namespace, index: int, array_size: int) -> Experiment:
    """The experiment of child ``index`` from the (comma-separated) parameters."""
    if not 0 <= index < array_size:
        raise BadManifest(f"child index {index} is outside the array of {array_size}")
    agents = _items(args.agent_type, "agent-type", array_size)
    files = _items(args.data_file, "data-file", array_size)
    names = _items(args.experiment_name, "experiment-name", array_size)
    episodes = _items(args.episodes, "episodes", array_size)
    agent, name = agents[index], names[index]
    if array_size > 1 and len(set(names)) == 1:  # one name for the array: each child its own folder
        name = f"{name}-{index}"
    elif len(set(names)) != len(names):
        raise BadManifest(f"experiment names repeat: {args.experiment_name!r}")
    if agent not in AGENT_TYPES:
        raise BadManifest(f"unknown agent type {agent!r} (known: {', '.join(AGENT_TYPES)})")
    try:
        count = int(episodes[index])
    except ValueError:
        raise BadManifest(f"episodes {episodes[index]!r} is not a whole number") from None
    if count <= 0:
        raise BadManifest(f"episodes must be at least 1 (got {count})")
    if not _EXPERIMENT.match(name):
        raise BadManifest(f"experiment name {name!r} must be letters, digits, . _ - (at most 64)")
    return Experiment(agent, files[index], name, count)


def main(argv: Sequence[str] | None = None) -> int:
    environ = os.environ
    try:
        try:
            args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        except SystemExit as exc:  # argparse printed its one line
            return 2 if exc.code else 0
        if not any(environ.get(k) for k in JOB_NAME_ENVS) or not environ.get(TOKEN_ENV):
            raise LocalTrainingRefused(
                "no console job names this process (RC_JOB_NAME, RC_JOB_TOKEN); "
                "submit it with `console dql submit --backend batch`"
            )
        place, settings, index = guarded_job(environ, args.settings, "the job's settings are")
        size = int(settings.get("array_size") or 1)
        experiment = pick_experiment(args, index, size)
        attempt = environ.get("AWS_BATCH_JOB_ATTEMPT", "1")
        run_experiment(place, settings, index, experiment, Path.cwd() / f"attempt-{attempt}", attempt)
    except TrainingError as exc:  # bad input 2, the guard 3: one line, no traceback
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    return 0


class Checkpoints:
    """The agent's checkpoint mirrored to ``out/checkpoints/<experiment>/`` (and read back).

    In S3 each checkpoint is its own object, ``episode-<N>.pt``, and ``last.json`` (episode,
    size, sha256, object) points at the newest whole one. The object goes up first and the
    pointer after it; the pointer's previous object is deleted only once the new pointer is
    up. A child ended at any moment therefore leaves a pointer to a whole checkpoint, and its
    retry loses at most the episodes since that one.
    """

    def __init__(self, place: S3Place, url: str, folder: Path) -> None:
        self.place, self.url, self.folder = place, url, folder
        self._published: str | None = None

    def restore(self) -> int:
        """The episode restored from ``out`` (0 when there is no whole checkpoint there)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        marker, data = self.folder / CHECKPOINT_FILES[1], self.folder / CHECKPOINT_FILES[0]
        for path in (marker, data):
            path.unlink(missing_ok=True)
        meta = self.place.get_json_or_none(self.url + CHECKPOINT_FILES[1])
        name = str(meta.get("object") or "") if isinstance(meta, dict) else ""
        if not _CHECKPOINT_OBJECT.fullmatch(name):
            return 0
        if not self.place.download(self.url + name, data) or (
            hashlib.sha256(data.read_bytes()).hexdigest() != meta.get("sha256")
        ):
            data.unlink(missing_ok=True)
            return 0
        local = {k: v for k, v in meta.items() if k != "object"}
        marker.write_text(json.dumps(local))
        self._published = name
        return int(meta.get("epoch") or meta.get("episode") or 0)

    def save(self) -> None:
        """Publish the checkpoint the trainer just wrote (``last.pt`` with ``last.json`` beside it)."""
        marker, data = self.folder / CHECKPOINT_FILES[1], self.folder / CHECKPOINT_FILES[0]
        if not (marker.is_file() and data.is_file()):
            return
        meta = json.loads(marker.read_text())
        episode = int(meta.get("epoch") or meta.get("episode") or 0)
        name = f"episode-{episode:06d}.pt"
        self.place.put_bytes(self.url + name, data.read_bytes())
        self.place.put_bytes(self.url + CHECKPOINT_FILES[1], json.dumps({**meta, "object": name}).encode())
        if self._published and self._published != name:
            try:  # cleanup: a checkpoint left over costs storage, never correctness
                self.place.delete(self.url + self._published)
            except Exception as exc:  # noqa: BLE001 - botocore's errors; training goes on
                print(
                    f"could not delete the superseded checkpoint {self._published} ({type(exc).__name__})",
                    file=sys.stderr,
                )
        self._published = name


def run_experiment(
    place: S3Place, settings: Mapping[str, Any], index: int, experiment: Experiment, here: Path, attempt: str
) -> None:
    out_url = str(settings["out"])
    events = Events(place, f"{out_url}events/{index}.jsonl", index)
    events.lines = _earlier_lines(place, events.url)  # a retry appends: the console has read those
    events("start", experiment.name, agent_type=experiment.agent_type, episodes=experiment.episodes, attempt=attempt)
    began = time.monotonic()
    try:
        row = train_and_report(place, settings, experiment, here, events)
    except TrainingError as exc:
        row = {"unit": "", "experiment": experiment.name, "state": "failed", "why": str(exc)}
    row["seconds"] = round(time.monotonic() - began, 3)
    events("done", row.get("unit", ""), experiment=experiment.name, state=row["state"],
           passed=row.get("passed", False), why=row.get("why", ""), resumed_from=row.get("resumed_from", 0))  # fmt: skip
    results = {"index": index, "units": [row], "attempt": attempt}
    place.put_bytes(f"{out_url}results/{index}.json", json.dumps(results, indent=1).encode())


def train_and_report(
    place: S3Place, settings: Mapping[str, Any], experiment: Experiment, here: Path, events: Events
) -> dict[str, Any]:
    """Fetch the data, train (resuming), judge, publish, report, upload; the results row."""
    from training.families.base import FitJob, Progress
    from training.families.dql import CHECKPOINT_NAME
    from training.families.dql.judged import judge_saved
    from training.families.run import train_unit

    out_url, name = str(settings["out"]), experiment.name
    data = here / "inputs" / "data.parquet"
    if experiment.data_file.startswith("s3://"):
        if not place.download_prefix(experiment.data_file, data):
            raise TrainingInputError(f"no data file at {experiment.data_file}")
    else:
        data = Path(experiment.data_file)
        if not data.exists():
            raise TrainingInputError(f"no data file at {experiment.data_file}")
    symbol = _symbol_of(data)
    work = here / "work" / name
    checkpoints = Checkpoints(place, f"{out_url}checkpoints/{name}/", work)
    resumed = checkpoints.restore()
    assert CHECKPOINT_NAME == CHECKPOINT_FILES[0]
    last = [0.0]

    def progress(p: Progress) -> None:
        saved = "checkpoint" in p.metrics
        if saved:
            checkpoints.save()
        if p.kind == "episode" and (saved or p.step == p.steps or time.monotonic() - last[0] > 2.0):
            last[0] = time.monotonic()
            metrics = {
                k: float(v) for k, v in p.metrics.items() if k in ("reward", "epsilon", "loss") and math.isfinite(v)
            }
            events("episode", symbol, experiment=name, step=p.step, steps=p.steps, **metrics)

    params = {**dict(settings.get("params") or {}), "agent_type": experiment.agent_type,
              "episodes": experiment.episodes}  # fmt: skip
    job = FitJob(
        family="dql",
        unit=symbol,
        inputs={"features": data},
        work_dir=work,
        params=params,
        costs=dict(settings.get("costs") or {}),
        seed=int(settings.get("seed") or 0),
    )
    root = here / "out"
    outcome = train_unit(job, root / "experiments" / name, on_progress=progress)
    judged = judge_saved(outcome.published.folder, data)
    report_dir = root / "experiments" / name / "report"
    judged.write_report(report_dir, name)
    _write_manifest(report_dir)
    model_rel = outcome.published.folder.relative_to(root).as_posix()
    report_rel = report_dir.relative_to(root).as_posix()
    place.upload_folder(outcome.published.folder, f"{out_url}{model_rel}/")
    place.upload_folder(report_dir, f"{out_url}{report_rel}/")
    return {
        "unit": symbol,
        "experiment": name,
        "agent_type": experiment.agent_type,
        "episodes": experiment.episodes,
        "resumed_from": resumed,
        "state": "succeeded",
        "model_dir": model_rel,
        "report_dir": report_rel,
        "timestamp": outcome.published.timestamp,
        "passed": outcome.verdict.passed,
        "reasons": list(outcome.verdict.reasons),
        "metrics": dict(outcome.evaluation.metrics),
    }


def _earlier_lines(place: S3Place, url: str) -> list[dict[str, Any]]:
    from training.container.batch import split_s3

    bucket, key = split_s3(url)
    try:
        raw = place.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception:  # noqa: BLE001 - none yet (botocore's NoSuchKey)
        return []
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


def _symbol_of(data: Path) -> str:
    """The symbol the feature file says it holds (its metadata only)."""
    from training.features.io import FeatureFileError, read_feature_meta
    from training.registry import check_symbol

    try:
        return check_symbol(read_feature_meta(data).symbol)
    except (FeatureFileError, OSError, ValueError) as exc:
        raise TrainingInputError(f"the data file is not a feature file ({type(exc).__name__}: {exc})") from None


def _write_manifest(folder: Path) -> None:
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "sha256.txt")
    lines = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    (folder / "sha256.txt").write_text(lines)
