"""The investment checklist end to end on the sandbox, in its smallest honest size: 160 days of
the simulator's daily market (too few for either gate's 50 judged test days, so the gate must
fail), four assets, one epoch. The data window is filled over HTTP, both models train on the
leased instance (never here), the version is uploaded but latest.json does not move, and the
runtime's dry run falls back to its baselines and says why."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import console.checklist
from console.errors import ChecklistError
from console.state import StateStore
from console.steps import load_checklist
from tests.console.cli import assert_one_line_error
from tests.e2e_support import CONSOLE, console_env, instance_root

pytestmark = pytest.mark.slow
SHIPPED = Path(console.checklist.__file__).parent / "checklists" / "investment.toml"
STEPS = (
    "investment-data",
    "launch",
    "sync",
    "train",
    "upload",
    "terminate",
    "investment-publish",
    "investment-runtime",
)


def small_investment_checklist(path: Path) -> Path:
    text = SHIPPED.read_text().replace("[params]\n", '[params]\nassets = ["XLK", "XLE", "GLD", "XLF"]\n', 1)
    path.write_text(re.sub(r"(?m)^backoff_s = [\d.]+$", "backoff_s = 0.3", text))
    return path


def test_investment_checklist_trains_both_models_remotely_and_a_failed_gate_leaves_latest_json_alone(
    tmp_path: Path,
) -> None:
    checklist = small_investment_checklist(tmp_path / "investment.toml")
    env = console_env(tmp_path / "home", tmp_path / "state")
    try:
        run = subprocess.run(
            [*CONSOLE, "run", "--checklist", str(checklist), "--max-days", "160", "--epochs", "1",
             "--regime-type", "transformer", "--output-dir", str(tmp_path / "out")],
            env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=str(tmp_path),
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        store = StateStore.open(tmp_path / "state")
        run_id = store.list_runs(1)[0].id
        assert [store.get_step(run_id, s).state for s in STEPS] == ["succeeded"] * len(STEPS)  # type: ignore[union-attr]
        data = store.step_outputs(run_id, "investment-data")
        assert data["days"] == 160 and data["filled"] == 160
        published = store.step_outputs(run_id, "investment-publish")
        assert not published["promoted"]
        assert any(r.startswith("regime: judged samples") for r in published["reasons"])
        assert any(
            r.startswith("health: judged samples") and "63-day blocks" in r and "(--max-days)" in r
            for r in published["reasons"]
        )
        runtime = store.step_outputs(run_id, "investment-runtime")
        assert runtime["source"] == {"regime": "baseline", "health": "baseline"} and runtime["version"] is None
        assert "no models/latest.json" in runtime["reasons"]["regime"]
        regime_config = (tmp_path / "out" / "regime" / "config.json").read_text()
        assert '"transformer"' in regime_config and (tmp_path / "out" / "health" / "weights.npz").is_file()
        # Trained on the leased instance: its root holds both units' models.
        launched = [e for e in store.events(run_id) if e.kind == "instance.launched"]
        root = instance_root(tmp_path / "state", launched[0].data["instance_id"])
        assert list(root.rglob("models/REGIME-DAILY/*/weights.npz")) and list(
            root.rglob("models/HEALTH-DAILY/*/weights.npz")
        )

    finally:
        subprocess.run([*CONSOLE, "sandbox", "down"], env=env, capture_output=True, timeout=60)


def test_the_seeds_flags_reach_the_investment_steps_and_another_checklist_refuses_them() -> None:
    spec = load_checklist("investment", overrides={"regime_type": "transformer", "health_type": "vae", "epochs": 3})
    train = next(s for s in spec.steps if s.name == "train").params
    assert train.family_params["regime"] == {"model_type": "transformer", "epochs": 3, "batch_size": 32}
    assert train.family_params["health"] == {"model_type": "vae", "epochs": 3, "batch_size": 64}
    with pytest.raises(ChecklistError, match="unknown parameter 'regime_type'"):
        load_checklist("retrain", overrides={"regime_type": "gru"})
    with pytest.raises(ChecklistError, match="'gru' or 'transformer'"):
        load_checklist("investment", overrides={"regime_type": "lstm"})


def test_train_health_refuses_a_file_without_a_column_before_launching_anything(tmp_path: Path) -> None:
    from training.families.investment.synthetic import daily_market

    features = daily_market(300, 3, seed=1).features().drop(columns=["vol_63d"])
    features.to_parquet(tmp_path / "features.parquet", index=False)
    env = console_env(tmp_path / "home", tmp_path / "state")
    refused = subprocess.run(
        [*CONSOLE, "train", "health", "--data", str(tmp_path / "features.parquet"), "--output", str(tmp_path / "m")],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    line = assert_one_line_error(refused, 2, "lacks column(s) vol_63d")
    assert "features" in line and not (tmp_path / "m").exists()
    assert not (tmp_path / "state" / "runs").exists() or not any((tmp_path / "state" / "runs").iterdir())
