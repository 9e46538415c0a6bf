"""The investment models in the bucket: latest.json moves only behind a passing gate, and the
runtime loads what it names, verified, or falls back to baselines and says why."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest

from remote.storage import LocalArtifactStore
from runtime_checks.investment import load_models, publish
from training.errors import CheckpointMismatch
from training.families import get_family
from training.families.evaluation import RuleOutcome, Verdict
from training.families.investment import REGIMES
from training.families.investment.package import unpack_model

PASS = Verdict((RuleOutcome("beats its baseline", True, 0.5, 0.4, 0.01),))
FAIL = Verdict((RuleOutcome("beats persistence on test_f1_macro", False, 0.34, 0.43, 0.6),))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One briefly trained model of each family, saved (the gate is not what is tested here)."""
    from training.families.base import FitJob
    from training.families.investment.synthetic import write_synthetic_tables

    root = tmp_path_factory.mktemp("models")
    context, features = write_synthetic_tables(root / "data", 420, 5, seed=0)
    inputs = {"regime": {"context": context}, "health": {"asset_features": features}}
    out: dict = {"folders": {}, "metrics": {}}
    for name in ("regime", "health"):
        family = get_family(name)
        job = FitJob(name, name, inputs[name], root / f"work-{name}", params={"epochs": 1, "device": "cpu"})
        fitted = family.fit(job, lambda p: None)
        folder = root / f"{name}-saved"
        folder.mkdir()
        family.save(fitted, folder)
        out["folders"][name] = folder
        out["metrics"][name] = json.loads((folder / "metrics.json").read_text())
    import pandas as pd

    out["context"] = pd.read_parquet(context)
    out["features"] = pd.read_parquet(features)
    return out


def _store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "bucket" / "models")


def test_a_passing_version_is_published_and_the_runtime_loads_it(tmp_path: Path, saved: dict) -> None:
    store = _store(tmp_path)
    result = publish(store, saved["folders"], {"regime": PASS, "health": PASS}, saved["metrics"])
    assert result.promoted
    latest = json.loads((tmp_path / "bucket" / "models" / "latest.json").read_text())
    assert latest["version"] == result.version
    assert latest["regime_model"] == f"models/regime_v{result.version}.zip"
    assert set(latest["regime_metrics"]) == {"test_accuracy", "test_f1_macro", "model_type"}
    assert set(latest["health_metrics"]) == {"test_recon_mse", "test_health_correlation", "model_type"}
    assert set(latest["sha256"]) == {latest["regime_model"], latest["health_model"]}
    models = load_models(store, tmp_path / "cache")
    assert models.source == {"regime": "trained", "health": "trained"}, models.reasons
    regime = models.regime.predict(saved["context"])
    assert regime["regime_label"] in REGIMES and len(regime["regime_embedding"]) == 8
    health = models.health.predict(saved["features"])
    one = next(iter(health.values()))
    assert 0.0 <= one["health_score"] <= 1.0 and len(one["latent"]) == 16


def test_a_failing_gate_leaves_the_previous_version_in_place(tmp_path: Path, saved: dict) -> None:
    store = _store(tmp_path)
    first = publish(store, saved["folders"], {"regime": PASS, "health": PASS}, saved["metrics"])
    second = publish(store, saved["folders"], {"regime": FAIL, "health": PASS}, saved["metrics"])
    assert not second.promoted and second.version != first.version
    assert any("beats persistence" in r and r.startswith("regime:") for r in second.reasons)
    latest = json.loads((tmp_path / "bucket" / "models" / "latest.json").read_text())
    assert latest["version"] == first.version


def test_a_tampered_model_falls_back_to_its_baseline_and_says_why(tmp_path: Path, saved: dict) -> None:
    store = _store(tmp_path)
    result = publish(store, saved["folders"], {"regime": PASS, "health": PASS}, saved["metrics"])
    target = tmp_path / "bucket" / "models" / f"health_v{result.version}.zip"
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    models = load_models(store, tmp_path / "cache")
    assert models.source == {"regime": "trained", "health": "baseline"}
    assert "sha256" in models.reasons["health"]
    assert next(iter(models.health.predict(saved["features"]).values()))["latent"] == [0.0] * 16


def test_no_latest_json_means_baselines_with_the_reason(tmp_path: Path, saved: dict) -> None:
    models = load_models(_store(tmp_path), tmp_path / "cache")
    assert models.source == {"regime": "baseline", "health": "baseline"}
    assert "no models/latest.json" in models.reasons["regime"]
    assert models.regime.predict(saved["context"])["regime_label"] in REGIMES


def test_without_torch_the_runtime_uses_baselines(tmp_path: Path, saved: dict, monkeypatch) -> None:
    store = _store(tmp_path)
    publish(store, saved["folders"], {"regime": PASS, "health": PASS}, saved["metrics"])
    monkeypatch.setitem(sys.modules, "torch", None)
    models = load_models(store, tmp_path / "cache")
    assert models.source == {"regime": "baseline", "health": "baseline"}
    assert models.reasons["health"] == "torch is not installed"


def test_an_archive_with_foreign_entries_is_refused(tmp_path: Path) -> None:
    crafted = tmp_path / "regime_vX.zip"
    with zipfile.ZipFile(crafted, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("../../escape.txt", "x")
    with pytest.raises(CheckpointMismatch, match="unexpected entries"):
        unpack_model(crafted, tmp_path / "out")
    assert not (tmp_path.parent / "escape.txt").exists()


def test_console_models_latest_shows_what_the_runtime_would_load(tmp_path: Path, saved: dict) -> None:
    from tests.console.cli import console

    store_dir = tmp_path / "bucket" / "models"
    result = publish(_store(tmp_path), saved["folders"], {"regime": PASS, "health": PASS}, saved["metrics"])
    proc = console("models", "latest", "--store", str(store_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown == {"version": result.version, "source": {"regime": "trained", "health": "trained"}, "reasons": {}}
