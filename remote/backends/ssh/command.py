"""What the ``ssh`` backend runs on a host: the scheduler's command line and its config file.

One submission is one ``python3 -m training.scheduler`` on the host, detached, training
every unit of the job (`BackendCapability.RUNS_ARRAYS`: the scheduler is the array), each
unit a ``python -m training.train`` subprocess that trains through the job's family::

    cd rc/code && python3 -m training.scheduler --symbols BTC-USD,ETH-USD --family lstm
        --features-dir ../data/features --out ../artifacts --mode hybrid --max-concurrent 2
        --config train-config.json --lease .rc-lease.json [--force]

``train-config.json`` holds the job's ``params`` sections the trainer reads (``train``,
``costs``, ``gates``, ``features``); ``schedule`` (mode, concurrency, ``force``) becomes flags.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from remote.backends.base import JobSpec
from remote.backends.ssh.hosts import RemoteLayout

CONFIG_NAME = "train-config.json"
CONFIG_SECTIONS = ("train", "costs", "gates", "features")
MODES = ("sequential", "parallel", "hybrid")


def schedule_of(spec: JobSpec) -> Mapping[str, Any]:
    """The job's ``schedule`` section: ``mode``, ``max_concurrent``, ``force``."""
    return dict(spec.params.get("schedule") or {})


def scheduler_command(spec: JobSpec, layout: RemoteLayout, *, force: bool) -> list[str]:
    """The argv of the job's scheduler, run from ``layout.code`` (every value checked or quoted later)."""
    schedule = schedule_of(spec)
    mode = str(schedule.get("mode", "hybrid"))
    if mode not in MODES:
        raise ValueError(f"schedule mode {mode!r} is not one of {', '.join(MODES)}")
    command = [
        "python3",
        "-m",
        "training.scheduler",
        "--symbols",
        ",".join(spec.units),
        "--family",
        spec.family,
        "--features-dir",
        relative(layout.features, layout.code),
        "--out",
        relative(layout.artifacts, layout.code),
        "--mode",
        mode,
        "--max-concurrent",
        concurrency(schedule.get("max_concurrent", 2)),
        "--config",
        CONFIG_NAME,
        "--lease",
        ".rc-lease.json",
    ]
    return command + (["--force"] if force else [])


def config_text(spec: JobSpec) -> str:
    """``train-config.json``: the sections of the job's params the trainer reads."""
    return json.dumps({k: spec.params[k] for k in CONFIG_SECTIONS if k in spec.params}, indent=2) + "\n"


def relative(path: str, base: str) -> str:
    """``path`` as seen from ``base`` when both are under the same remote root."""
    prefix = base.rsplit("/", 1)[0] + "/"
    return "../" + path[len(prefix) :] if path.startswith(prefix) else path


def concurrency(value: object) -> str:
    """``--max-concurrent``'s value: ``auto`` (the host sizes it to its GPUs) or a whole number."""
    return "auto" if str(value).strip().lower() == "auto" else str(int(str(value)))
