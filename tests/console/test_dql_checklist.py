"""The dql checklist end to end on the sandbox, in its smallest honest size: one symbol,
three days of candles, two short episodes. The agent trains on the leased instance (never
here), is judged after costs against its baselines, and comes home with its verdict and
its report page."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

import console.checklist
from console.state import StateStore
from tests.e2e_support import CONSOLE, console_env, instance_root, model_folders, verify_model_folder

pytestmark = pytest.mark.slow
SHIPPED = Path(console.checklist.__file__).parent / "checklists" / "dql.toml"
STEPS = ("fetch", "features", "verify-counts", "launch", "sync", "train", "upload", "terminate", "download",
         "dql-report")  # fmt: skip


def small_dql_checklist(path: Path) -> Path:
    text = SHIPPED.read_text()
    sandbox = text[text.index("[profiles.sandbox.params]") :]
    sandbox = re.sub(r"(?m)^days = \d+$", "days = 3", sandbox)
    sandbox = re.sub(r"(?m)^(epochs|episodes) = \d+$", r"\1 = 2", sandbox)
    sandbox = re.sub(r"(?m)^episode_length = \d+$", "episode_length = 64", sandbox)
    sandbox = re.sub(r"(?m)^backoff_s = [\d.]+$", "backoff_s = 0.3", sandbox)
    path.write_text(text[: text.index("[profiles.sandbox.params]")] + sandbox)
    return path


def test_dql_checklist_trains_on_the_instance_and_judges_the_agent_after_costs(tmp_path: Path) -> None:
    checklist = small_dql_checklist(tmp_path / "dql.toml")
    env = console_env(tmp_path / "home", tmp_path / "state")
    try:
        run = subprocess.run([*CONSOLE, "run", "--checklist", str(checklist)], env=env, capture_output=True,
                             text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=str(tmp_path))  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        store = StateStore.open(tmp_path / "state")
        run_id = store.list_runs(1)[0].id
        assert [store.get_step(run_id, s).state for s in STEPS] == ["succeeded"] * len(STEPS)  # type: ignore[union-attr]
        folders = model_folders(tmp_path / "state" / "data" / "models")
        assert len(folders) == 1 and not verify_model_folder(folders[0])
        config = json.loads((folders[0] / "config.json").read_text())
        assert config["format"] == "retrain-console/dql/1"
        verdict = json.loads((folders[0] / "verdict.json").read_text())
        assert any(line.startswith("earns after costs") for line in verdict["lines"])
        assert any(line.startswith("beats buy and hold") for line in verdict["lines"])
        evaluation = json.loads((folders[0] / "evaluation.json").read_text())
        assert set(evaluation["baselines"]) == {"buy_and_hold", "flat", "last_move"}
        # Trained on the leased instance: its root holds the model the console brought home.
        launched = [e for e in store.events(run_id) if e.kind == "instance.launched"]
        root = instance_root(tmp_path / "state", launched[0].data["instance_id"])
        assert list(root.rglob(f"models/BTC-USD/{folders[0].name}/weights.npz"))
        # Episodes went by with their reward, and the report step named its page (the TUI shows both).
        progress = [e for e in store.events(run_id) if e.kind == "train.progress"]
        assert progress and all(isinstance(e.data.get("reward"), float) for e in progress)
        reports = [e for e in store.events(run_id) if e.kind == "train.report"]
        assert [e.data["path"] for e in reports] == [str(tmp_path / "results" / run_id / "report.html")]
        assert (tmp_path / "results" / run_id / "equity.png").is_file()
    finally:
        subprocess.run([*CONSOLE, "sandbox", "down"], env=env, capture_output=True, timeout=60)
