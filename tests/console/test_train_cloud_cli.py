"""`console train cloud | cloud-status | cloud-list` as an operator runs them (subprocesses),
on the sandbox, whose SageMaker front runs the training job for real: the smallest honest
job (one symbol on hourly candles, forty days -- about the least the purge gap between parts
allows -- one epoch) through fetch, features, the SageMaker job, upload and download; then
the job's status with its managed-spot saving, the model in the store, and the alignment
check judging it on the hourly candles it was trained on. (The one-minute path's job runs in
the backend conformance tests and `tests/remote/test_sandbox_sagemaker.py`.)"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from remote.sandbox.endpoints import SandboxEndpoints
from tests.e2e_support import CONSOLE, console_env
from tests.remote.sandbox_fixtures import sandbox  # noqa: F401  (the session's daemon)


@pytest.fixture(scope="module")
def env(sandbox: SandboxEndpoints, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:  # noqa: F811
    """The console's environment in the session's sandbox state dir: the daemon the other
    sandbox tests already run serves it (no second daemon to start and stop)."""
    return console_env(tmp_path_factory.mktemp("train-cloud") / "home", sandbox.state_dir)


def console(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CONSOLE, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_train_cloud_on_hourly_candles_runs_a_sagemaker_job_and_brings_the_model_home_with_its_spot_saving(
    env,
) -> None:
    done = console(env, "train", "cloud", "BTC-USD", "--provider", "local", "--days", "40", "--epochs", "1",
                   "--timeframe", "1h")  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    run_id = re.search(r"^run (\S+): BTC-USD \(1h candles\) on the sandbox's SageMaker", done.stdout, re.M).group(1)
    assert re.search(r"fetch +SUCCEEDED +fetched 9\d\d candles for BTC-USD", done.stdout)  # hourly ones only
    assert re.search(r"verify-counts +SUCCEEDED +feature counts match: BTC-USD 54", done.stdout)
    assert "train.progress BTC-USD epoch 1/1" in done.stdout
    assert re.search(r"train +train\.job +SageMaker Training: ", done.stdout)  # the TUI's training pane shows it
    for step in ("train", "upload", "download"):
        assert re.search(rf"^\S+ {step} +SUCCEEDED", done.stdout, re.M), step
    state = Path(env["RC_STATE_DIR"])
    assert (state / "data" / "features" / "1h" / "BTC-USD.parquet").exists()  # beside, not over, the 1m file
    [verdict] = list((state / "data" / "models").rglob("models/BTC-USD/*/verdict.json"))
    recorded = json.loads((verdict.parent / "features.json").read_text())
    assert (recorded["timeframe"], recorded["feature_count"]) == ("1h", 54)

    # Judged on the candles it was trained on: hourly runtime rows against the hourly file.
    aligned = console(env, "check", "alignment", "--symbols", "BTC-USD")
    assert aligned.returncode == 0, aligned.stdout[-2000:] + aligned.stderr[-2000:]
    agreed = re.search(r"aligned, 54 features in the same order.*?on (\d+) rows \((.+?) UTC\.\.(.+?) UTC",
                       " ".join(aligned.stdout.replace("│", " ").split()))  # fmt: skip
    assert agreed, aligned.stdout
    rows, first, last = int(agreed[1]), pd.Timestamp(agreed[2]), pd.Timestamp(agreed[3])
    assert rows > 100 and (last - first) / pd.Timedelta(hours=1) == rows - 1  # one row an hour

    job = f"train-{run_id}-btc-usd"
    status = console(env, "train", "cloud-status", job, "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert (report["status"], report["secondary"], report["run_id"]) == ("Completed", "Completed", run_id)
    assert report["epoch_line"].startswith("BTC-USD epoch 1/1") and report["spot"] is True
    assert 0 < report["billable_s"] < report["training_s"]
    assert report["saving_pct"] == pytest.approx((1 - report["billable_s"] / report["training_s"]) * 100, abs=0.1)
    assert report["model"].endswith(f"/{job}/output/model.tar.gz")

    cost = console(env, "cost", "--run", run_id, "--json")
    assert cost.returncode == 0, cost.stderr
    [line] = json.loads(cost.stdout)["jobs"]  # billed by the service: a job line, no instance line
    assert (line["job"], line["status"], line["spot"], line["source"]) == (job, "succeeded", True, "sandbox table")
    assert (line["training_s"], line["billable_s"]) == (report["training_s"], report["billable_s"])
    assert line["cost_usd"] == pytest.approx(line["billable_s"] * line["rate_usd_per_h"] / 3600)
    assert line["saved_pct"] == pytest.approx(report["saving_pct"], abs=0.1)
    shown = console(env, "cost", "--run", run_id)
    assert "training jobs (billed by the service)" in shown.stdout and "saved %" in shown.stdout

    listed = console(env, "train", "cloud-list", "BTC-USD", "--model-type", "lstm", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["run_id"] for r in rows] == [run_id] and rows[0]["family"] == "lstm"

    for args, code, words in (
        (("train", "cloud-status", "train-no-such-job"), 2, "no SageMaker training job named 'train-no-such-job'"),
        (("train", "cloud-list", "ETH-USD"), 2, "no models of ETH-USD"),
        (("train", "cloud-list", "BTC-USD", "--model-type", "gbm"), 2, "no gbm models of BTC-USD"),
    ):
        bad = console(env, *args)
        assert (bad.returncode, bad.stderr.count("\n")) == (code, 1), bad.stderr
        assert words in bad.stderr and "Traceback" not in bad.stderr


def test_off_the_sandbox_local_is_refused_and_a_missing_role_names_the_setting(tmp_path: Path) -> None:
    env = console_env(tmp_path / "home", tmp_path / "state")
    local = console(env, "train", "cloud", "BTC-USD", "--provider", "local", "--profile", "aws", timeout=60)
    assert local.returncode == 3 and "refusing to train locally: --provider local" in local.stderr
    missing = console(env, "train", "cloud", "BTC-USD", "--provider", "sagemaker", "--profile", "aws", timeout=60)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "SAGEMAKER_ROLE_ARN is not set" in missing.stderr and "console infra deploy" in missing.stderr
    unknown = console(env, "train", "cloud", "BTC-USD", "--provider", "azureml", timeout=60)
    assert unknown.returncode == 2 and "azureml" in unknown.stderr
    for args, words in ((("train", "cloud", "BTC-USD", "--timeframe", "2h"), "unknown timeframe '2h'"),
                        (("train", "cloud-list", "../etc"), "invalid symbol")):  # fmt: skip
        bad = console(env, *args, timeout=60)
        assert (bad.returncode, bad.stderr.count("\n")) == (2, 1), bad.stderr
        assert words in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "state" / "runs").exists() or not any((tmp_path / "state" / "runs").iterdir())
