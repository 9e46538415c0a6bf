"""`console dql submit --backend batch` on the sandbox, where Batch jobs run for real: two
experiments as one array job of the dql job definition (the seed's ``Ref::`` parameters),
each child training, judging and reporting in the container's ``dql`` mode; one child's
spot host is reclaimed after its first checkpoint and the retry, in a fresh folder, resumes
from the checkpoint the child left in S3 without losing an episode. And the container's
``dql`` mode refuses to run outside a job the console submitted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from remote.providers.aws_client import make_client
from tests.e2e_support import CONSOLE, console_env, model_folders, verify_model_folder
from training.families.dql.synthetic import write_market_file

EPISODES = 10


def _reclaim_after_first_checkpoint(proc: subprocess.Popen[str], state: Path) -> dict[str, Any]:
    """Wait for child 0's first checkpoint in S3, then end its host as a spot reclaim does."""
    from remote.sandbox.lifecycle import require_up

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            target = require_up(state).aws_target()
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    s3, batch = make_client("s3", target), make_client("batch", target)
    parent, key = "", ""
    while time.monotonic() < deadline and proc.poll() is None:
        if not parent:
            jobs = batch.list_jobs(jobQueue="rc-engine")["jobSummaryList"]
            if jobs:  # the job's name is its run id; its outputs are under runs/<run>/jobs/<name>/<work>/out/
                parent, name = jobs[0]["jobId"], jobs[0]["jobName"]
                work = batch.describe_jobs(jobs=[parent])["jobs"][0]["tags"]["rc-work"]
                key = f"runs/{name}/jobs/{name}/{work}/out/checkpoints/exp-custom-BTC-USD/last.json"
        else:
            try:
                s3.head_object(Bucket="rc-sandbox-artifacts", Key=key)
            except s3.exceptions.ClientError:
                time.sleep(0.05)
                continue
            request = urllib.request.Request(f"{target.endpoint_url}/_sandbox/batch/reclaim", method="POST",
                                             data=json.dumps({"job_id": f"{parent}:0"}).encode())  # fmt: skip
            urllib.request.urlopen(request, timeout=10).read()
            return {"job": batch.describe_jobs(jobs=[parent])["jobs"][0], "batch": batch, "parent": parent}
        time.sleep(0.05)
    raise AssertionError("child 0 wrote no checkpoint while it ran")


@pytest.mark.slow
def test_dql_experiments_run_as_one_batch_array_job_and_a_reclaimed_child_resumes(tmp_path: Path) -> None:
    btc = write_market_file(tmp_path / "data", "BTC-USD", 2400, 3, seed=5, signal=0.0)
    eth = write_market_file(tmp_path / "data", "ETH-USD", 2400, 3, seed=6, signal=0.0)
    env = console_env(tmp_path / "home", tmp_path / "state")
    args = ["dql", "submit", "--backend", "batch", "--data-file", str(btc), "--data-file", str(eth),
            "--episodes", str(EPISODES), "--episode-length", "64", "--window", "4", "--checkpoint-every", "2",
            "--experiment-name", "exp"]  # fmt: skip
    proc = subprocess.Popen([*CONSOLE, *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        seen = _reclaim_after_first_checkpoint(proc, tmp_path / "state")
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        # One array job of the dql definition, its command the seed's Ref:: parameters.
        job = seen["job"]
        assert job["arrayProperties"]["size"] == 2
        assert job["parameters"]["agent_type"] == "custom"
        assert job["parameters"]["experiment_name"] == "exp-custom-BTC-USD,exp-custom-ETH-USD"
        assert job["parameters"]["episodes"] == str(EPISODES)
        definition = seen["batch"].describe_job_definitions(jobDefinitionName="rc-dql")["jobDefinitions"][-1]
        command = definition["containerProperties"]["command"]
        assert command[:4] == ["python", "-m", "training.container", "dql"] and "Ref::agent_type" in command
        # Child 0 was reclaimed after a checkpoint and resumed from it on its retry: every episode once.
        child = seen["batch"].describe_jobs(jobs=[f"{seen['parent']}:0"])["jobs"][0]
        assert child["attempts"][0]["statusReason"].startswith("Host EC2") and len(child["attempts"]) == 2
        folders = {f.parent.name: f for f in model_folders(tmp_path / "state" / "data" / "models")}
        assert set(folders) == {"BTC-USD", "ETH-USD"}
        for folder in folders.values():
            assert not verify_model_folder(folder)
            log = json.loads((folder / "training_log.json").read_text())
            assert [int(r["episode"]) for r in log] == list(range(1, EPISODES + 1))
        assert re.search(r"exp-custom-BTC-USD: started \(custom, attempt 2\)", out), out
        resumed = re.search(r"exp-custom-BTC-USD: succeeded \(resumed from episode (\d+)\)", out)
        assert resumed and 2 <= int(resumed.group(1)) < EPISODES, out
        # Judged after costs against the baselines; on noise the gate fails and nothing is champion.
        verdict = json.loads((folders["BTC-USD"] / "verdict.json").read_text())
        assert not verdict["passed"] and any(line.startswith("beats buy and hold") for line in verdict["lines"])
        assert not (tmp_path / "state" / "data" / "models" / "champions").exists() or not list(
            (tmp_path / "state" / "data" / "models" / "champions").glob("*.json")
        )
        for name in ("exp-custom-BTC-USD", "exp-custom-ETH-USD"):
            report = tmp_path / "results" / name
            assert {"report.html", "equity.png", "training.png"} <= {p.name for p in report.iterdir()}
            assert f"report: results/{name}/report.html" in out
        assert "reward" in out
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([*CONSOLE, "sandbox", "down"], env=env, capture_output=True, timeout=60)


def test_the_container_dql_job_refuses_to_train_outside_a_submitted_job(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "training.container", "dql", "full-workflow", "--agent_type", "custom",
         "--data_file", "s3://bucket/BTC-USD.parquet", "--experiment_name", "e", "--episodes", "1",
         "--settings", "s3://bucket/settings.json"],
        env=env, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("refusing to train locally") and "Traceback" not in proc.stderr


def _args(agent: str, names: str, episodes: str) -> Any:
    from training.container.dql import build_parser

    return build_parser().parse_args(["full-workflow", "--agent_type", agent, "--data_file", "s3://b/k",
                                      "--experiment_name", names, "--episodes", episodes, "--settings", "s3://b/s"])  # fmt: skip


def test_each_child_takes_its_item_of_the_parameters_and_a_shared_value_applies_to_all() -> None:
    from training.container.dql import Experiment, pick_experiment

    args = _args("custom,dqn", "e", "3")
    assert pick_experiment(args, 0, 2) == Experiment("custom", "s3://b/k", "e-0", 3)
    assert pick_experiment(args, 1, 2) == Experiment("dqn", "s3://b/k", "e-1", 3)


@pytest.mark.parametrize(
    ("agent", "names", "episodes", "size", "needle"),
    [
        ("custom,dqn,custom", "a,b", "3", 2, "3 items for an array of 2"),
        ("ppo", "a,b", "3", 2, "unknown agent type 'ppo'"),
        ("custom", "a,a,b", "3", 3, "experiment names repeat"),
        ("custom", "a,b", "0", 2, "at least 1"),
        ("custom", "a/b,c", "3", 2, "experiment name"),
    ],
)
def test_a_childs_parameters_that_do_not_fit_the_array_are_bad_input(
    agent: str, names: str, episodes: str, size: int, needle: str
) -> None:
    from training.container.dql import pick_experiment
    from training.errors import TrainingInputError

    with pytest.raises(TrainingInputError, match=re.escape(needle)):
        pick_experiment(_args(agent, names, episodes), 0, size)


def _checkpoint(folder: Path, episode: int) -> bytes:
    """What the trainer leaves after an episode's checkpoint: ``last.pt`` and its record."""
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    data = f"weights after episode {episode}".encode()
    (folder / "last.pt").write_bytes(data)
    (folder / "last.json").write_text(
        json.dumps({"episode": episode, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    )
    return data


def test_a_child_ended_between_checkpoint_and_pointer_resumes_from_the_previous_whole_one(
    tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secrets

    from training.container.batch import S3Place
    from training.container.dql import Checkpoints

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA" + secrets.token_hex(8).upper())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets.token_urlsafe(30))
    bucket = f"ckpt-{secrets.token_hex(4)}"
    place = S3Place()
    place.s3.create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/out/checkpoints/exp/"

    first = Checkpoints(place, url, tmp_path / "attempt-1")
    assert first.restore() == 0  # nothing there yet
    two = _checkpoint(first.folder, 2)
    first.save()
    place.put_bytes(url + "episode-000004.pt", _checkpoint(first.folder, 4))  # the host is reclaimed before the pointer goes up

    second = Checkpoints(place, url, tmp_path / "attempt-2")
    assert second.restore() == 2
    assert (second.folder / "last.pt").read_bytes() == two
    assert json.loads((second.folder / "last.json").read_text())["episode"] == 2

    _checkpoint(second.folder, 6)
    second.save()
    keys = {o["Key"].rsplit("/", 1)[1] for o in place.s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {"episode-000004.pt", "episode-000006.pt", "last.json"}  # the old pointer's object is gone

    place.put_bytes(url + "episode-000006.pt", b"not what the pointer names")
    assert Checkpoints(place, url, tmp_path / "attempt-3").restore() == 0  # one that fails its hash is none
    for pointer in (b"[6]", b'{"object": "../../settings.json", "episode": 6}', b"torn {"):
        place.put_bytes(url + "last.json", pointer)
        assert Checkpoints(place, url, tmp_path / "attempt-4").restore() == 0
