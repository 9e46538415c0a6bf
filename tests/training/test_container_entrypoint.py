"""The container entry point follows SageMaker's /opt/ml contract, outside Docker, in a
temporary /opt/ml tree: it refuses without the console's job token, trains through the
family driver, and on SIGTERM keeps the last whole epoch's checkpoint in /opt/ml/checkpoints
and exits at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.container import token_digest

REPO = Path(__file__).resolve().parents[2]
UNIT = "BTC-USD"
JOB = "train-conf-1-btc-usd"
TRAIN = {"window": 8, "longest_feature_window": 10, "hidden_size": 8, "num_layers": 1, "batch_size": 64,
         "device": "cpu", "patience": 1000}  # fmt: skip


def opt_ml(tmp_path: Path, epochs: int, *, token: str) -> tuple[Path, dict[str, str]]:
    """A /opt/ml tree for one job (features, config, hyperparameters) and the job's environment."""
    from training.families.lstm.synthetic import write_synthetic_feature_file
    from training.features.spec import SPEC_VERSION, spec_for

    root = tmp_path / "opt" / "ml"
    write_synthetic_feature_file(root / "input/data/features", UNIT, 9000, 3, stored_hash=spec_for(UNIT).hash,
                                 spec_version=SPEC_VERSION)  # fmt: skip
    (root / "input/data/config").mkdir(parents=True)
    config = {"train": {**TRAIN, "epochs": epochs}, "gates": {"min_trades": 5}}
    (root / "input/data/config/train-config.json").write_text(json.dumps(config))
    (root / "input/config").mkdir(parents=True)
    hp = {"rc_job_name": JOB, "rc_job_token_sha256": token_digest(JOB, token), "family": "lstm", "units": UNIT}
    (root / "input/config/hyperparameters.json").write_text(json.dumps(hp))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RC_", "TRAINING_JOB"))}
    env.update(RC_OPT_ML=str(root), TRAINING_JOB_NAME=JOB, RC_JOB_TOKEN=token, PYTHONPATH=str(REPO),
               OMP_NUM_THREADS="1")  # fmt: skip
    return root, env


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "training.container", "sagemaker"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_entry_point_refuses_to_train_without_the_console_job_token(tmp_path: Path) -> None:
    token = "t-" + os.urandom(8).hex()
    root, env = opt_ml(tmp_path, 1, token=token)
    env["RC_JOB_TOKEN"] = "forged-" + os.urandom(8).hex()
    done = subprocess.run([sys.executable, "-m", "training.container", "sagemaker"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert (root / "output/failure").read_text().startswith("refusing to train locally: ")
    assert not (root / "model").exists()
    del env["TRAINING_JOB_NAME"]
    env["RC_JOB_TOKEN"] = token
    done = subprocess.run([sys.executable, "-m", "training.container", "sagemaker"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 3 and "no training job names this process" in (root / "output/failure").read_text()
    assert token not in done.stdout + done.stderr


def test_an_unknown_mode_is_bad_input() -> None:
    done = subprocess.run([sys.executable, "-m", "training.container", "nonsense"], cwd=REPO, capture_output=True,
                          text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.returncode == 2 and "sagemaker" in done.stderr


@pytest.mark.slow
def test_sigterm_keeps_the_last_whole_epochs_checkpoint_and_exits_143(tmp_path: Path) -> None:
    token = "t-" + os.urandom(8).hex()
    root, env = opt_ml(tmp_path, 200, token=token)  # long enough that SIGTERM lands mid-run
    proc = start(env)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    for raw in proc.stdout:  # wait for the first whole epoch, then interrupt the second
        seen.append(raw)
        if '"event": "epoch"' in raw or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert "SIGTERM" in (root / "output/failure").read_text()
    record = json.loads((root / "checkpoints" / UNIT / "last.json").read_text())
    assert record["epoch"] >= 1
    assert not list((root / "model").rglob("model.pt"))  # nothing published from a stopped job
    # The next start resuming from these checkpoints (and publishing): the sandbox's spot
    # interruption test, tests/remote/test_sandbox_sagemaker.py.
