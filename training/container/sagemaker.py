"""The ``sagemaker`` mode: SageMaker's /opt/ml contract around the shared training driver.

    /opt/ml/input/config/hyperparameters.json   rc_job_name, rc_job_token_sha256 (the guard),
                                                family, units ("BTC-USD,ETH-USD")
    /opt/ml/input/data/features/<UNIT>.parquet  the feature files (channel ``features``)
    /opt/ml/input/data/config/train-config.json the job's train / costs / gates / features sections
    /opt/ml/checkpoints/<UNIT>/                 the family's checkpoints: resumed from when present
    /opt/ml/model/                              the artifact root (models/, champions/, summary.json)
    /opt/ml/output/failure                      one line on why, when the job fails

Stdout carries `training.train`'s JSON lines (``start``, ``epoch``, ``done``, ``error``): the
job's log stream, which the console follows. On SIGTERM (a stop, or a spot interruption:
SageMaker allows 120 s) the epoch under way is abandoned, the last whole epoch's checkpoint
is already in /opt/ml/checkpoints, and the process exits 143 at once.

Exit codes: 0 every unit trained, 1 a unit failed, 2 bad input, 3 refused by the guard, 143 SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from training.container import OptMl, check_job_token
from training.errors import EXIT_BAD_INPUT, EXIT_FAILED, TrainingError
from training.registry import write_json_atomic

EXIT_TERMINATED = 143
CONFIG_CHANNEL = "config"
CONFIG_FILE = "train-config.json"
FEATURES_CHANNEL = "features"


class Terminated(BaseException):
    """SIGTERM arrived: leave the epoch under way (BaseException: no ``except Exception`` swallows it)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def read_hyperparameters(opt: OptMl) -> dict[str, str]:
    try:
        data = json.loads(opt.hyperparameters.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BadHyperparameters(f"{opt.hyperparameters} is unreadable ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise BadHyperparameters(f"{opt.hyperparameters} is not a JSON object")
    return {str(k): str(v) for k, v in data.items()}


class BadHyperparameters(TrainingError):
    exit_code = EXIT_BAD_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    """Train every unit the hyperparameters name; the exit code as the module docstring says."""
    opt = OptMl.from_environ()
    signal.signal(signal.SIGTERM, _on_sigterm)
    unit = ""
    try:
        hp = read_hyperparameters(opt)
        check_job_token(os.environ, hp)  # before any data is read
        units = [u for u in hp.get("units", "").split(",") if u]
        if not units:
            raise BadHyperparameters("the job names no units (hyperparameter 'units')")
        started = time.monotonic()
        rows = []
        for unit in units:
            rows.append(train_one(opt, hp, unit))
        summary = {"succeeded": len(rows), "failed": 0, "seconds": round(time.monotonic() - started, 3),
                   "symbols": rows}  # fmt: skip
        write_json_atomic(opt.model / "summary.json", summary)
    except Terminated:
        _fail(opt, unit, EXIT_TERMINATED, "stopped by SIGTERM; the last whole epoch's checkpoint is kept")
        return EXIT_TERMINATED
    except TrainingError as exc:
        _fail(opt, unit, exc.exit_code, str(exc))
        return exc.exit_code
    except Exception as exc:  # the reason in one line for the console, the traceback for the log
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        traceback.print_exc(file=sys.stderr)
        _fail(opt, unit, EXIT_FAILED, f"training {unit or 'the job'} failed: {type(exc).__name__}: {first}")
        return EXIT_FAILED
    return 0


def train_one(opt: OptMl, hp: Mapping[str, str], unit: str) -> dict[str, Any]:
    """One unit through `training.train` (flags as the SSH host's scheduler passes them)."""
    from training import train

    argv = [
        "--symbol", unit,
        "--family", hp.get("family", "lstm"),
        "--features-dir", str(opt.channel(FEATURES_CHANNEL)),
        "--out", str(opt.model),
    ]  # fmt: skip
    config = opt.channel(CONFIG_CHANNEL) / CONFIG_FILE
    if config.is_file():
        argv += ["--config", str(config)]
    if hp.get("expected_feature_hash"):
        argv += ["--expected-feature-hash", hp["expected_feature_hash"]]
    job = replace(train.job_from_args(train.build_parser().parse_args(argv)), checkpoint_root=opt.checkpoints)
    last: dict[str, Any] = {}

    def relay(event: str, **fields: Any) -> None:
        if event == "epoch":
            last["epoch"] = fields.get("epoch")
        train.emit(event, **fields)

    published = train.run_job(job, on_event=relay)
    return {
        "symbol": unit,
        "state": "succeeded",
        "last_epoch": last.get("epoch"),
        "model_dir": str(Path(published.folder).relative_to(opt.model)),
        "passed": published.passed,
        "promoted": published.promoted,
        "why": "; ".join(published.reasons),
    }


def _fail(opt: OptMl, unit: str, code: int, message: str) -> None:
    from training.train import emit

    emit("error", symbol=unit, exit_code=code, message=message)
    print(message, file=sys.stderr)
    opt.failure.parent.mkdir(parents=True, exist_ok=True)
    tmp = opt.failure.with_name(".failure.tmp")
    tmp.write_text(message.splitlines()[0][:1000] + "\n")
    os.replace(tmp, opt.failure)
