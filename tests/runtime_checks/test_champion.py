"""Promotion end to end: a downloaded run's model meets the local champion on the same bars,
a champion expires, and roster.json and champions/ never tell two stories.

Real pieces: simulator candles through the small feature builder into a feature file, a
logistic model fitted on it and saved as a real model.pt, an untrained network as the
other model, a real local artifact store, and `console.transfer.place_version`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from console.transfer import place_version
from remote.storage.local import LocalArtifactStore
from remote.storage.versions import ArtifactTags
from runtime_checks import models
from runtime_checks.champion import same_bars_challenge
from runtime_checks.small import SmallBuilder, fit_linear_model, write_model, write_training_file
from training.features.io import read_feature_columns

SYMBOL = "BTC-USD"
NO_FEES = {"fee_bps": 0.0, "spread_bps": 0.0, "slippage_bps": 0.0}
"""Five-minute calls of a small logistic model earn their keep only without fees: the comparison is what is tested."""


def iso(days_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def declare(root: Path, folder: Path | None, *, passed: bool, promoted_days_ago: float = 0.0) -> None:
    """Make ``folder`` the latest model of ``root`` (and its champion when ``passed``), as the trainer does."""
    rel = folder.relative_to(root).as_posix() if folder else None
    entry = {"latest": rel, "latest_passed": passed, "latest_reasons": [] if passed else ["no edge"],
             "champion": rel if passed else None}  # fmt: skip
    if passed:
        (root / "champions").mkdir(parents=True, exist_ok=True)
        (root / "champions" / f"{SYMBOL}.json").write_text(
            json.dumps({"symbol": SYMBOL, "model_dir": rel, "promoted_at": iso(promoted_days_ago)})
        )
        entry["champion_promoted_at"] = iso(promoted_days_ago)
    (root / "roster.json").write_text(json.dumps({"symbols": {SYMBOL: entry}, "updated_at": iso(0)}))


def write_test_part(folder: Path, frame_path: Path) -> None:
    """evaluation.json naming the last fifth of the feature file as the model's test part."""
    stamps = read_feature_columns(frame_path, ["timestamp"])[0]["timestamp"]
    first = stamps.iloc[int(len(stamps) * 0.8)]
    part = {"name": "test", "samples": 0, "first": f"{first:%Y-%m-%dT%H:%M:%SZ}", "last": f"{stamps.iloc[-1]:%Y-%m-%dT%H:%M:%SZ}"}  # fmt: skip
    (folder / "evaluation.json").write_text(json.dumps({"part": part}))


@pytest.fixture
def world(tmp_path):
    features = tmp_path / "features"
    path = write_training_file(features, SYMBOL, mode="structured", days=12, seed=5)
    return tmp_path, features, path


def download(tmp_path: Path, run: Path, local: Path, features: Path, **kwargs):
    store = LocalArtifactStore(tmp_path / "store")
    record = store.upload_version(run, ArtifactTags("run-1", "2026-06-01", "none - sandbox CPU"))
    return place_version(store, record.version, local, tmp_path / "downloads",
                         challenge=same_bars_challenge(features), **kwargs)  # fmt: skip


def roster(local: Path) -> dict:
    return json.loads((local / "roster.json").read_text())["symbols"][SYMBOL]


def pointer(local: Path) -> dict | None:
    path = local / "champions" / f"{SYMBOL}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def test_a_better_challenger_takes_the_place_and_roster_and_pointer_agree(world):
    tmp_path, features, path = world
    local, run = tmp_path / "models", tmp_path / "run"
    spec = SmallBuilder().spec(SYMBOL)
    old = write_model(local, SYMBOL, spec.names, spec.hash, stamp="20260501T000000Z", window=4, horizon=1, seed=3)
    declare(local, old, passed=True, promoted_days_ago=2)
    new = fit_linear_model(features, run, SYMBOL, horizon=1, costs=NO_FEES)
    write_test_part(new, path)
    declare(run, new, passed=True)
    download(tmp_path, run, local, features)
    entry = roster(local)
    assert entry["champion"] == "models/BTC-USD/20260601T000000Z" == pointer(local)["model_dir"]
    assert "promoted over models/BTC-USD/20260501T000000Z: after costs" in entry["champion_note"]
    assert "on the same" in entry["champion_note"] and "p=" in entry["champion_note"]
    assert models.model_folder(local, SYMBOL).name == "20260601T000000Z"


def test_a_worse_challenger_leaves_the_champion_in_place(world):
    tmp_path, features, path = world
    local, run = tmp_path / "models", tmp_path / "run"
    good = fit_linear_model(features, local, SYMBOL, horizon=1)  # 20260601T000000Z
    declare(local, good, passed=True, promoted_days_ago=1)
    spec = SmallBuilder().spec(SYMBOL)
    bad = write_model(run, SYMBOL, spec.names, spec.hash, stamp="20260602T000000Z", window=4, horizon=1, seed=3,
                      costs=NO_FEES)
    write_test_part(bad, path)
    declare(run, bad, passed=True)
    download(tmp_path, run, local, features)
    entry = roster(local)
    assert entry["champion"] == "models/BTC-USD/20260601T000000Z" == pointer(local)["model_dir"]
    assert entry["latest"] == "models/BTC-USD/20260602T000000Z"
    assert "keeps its place over models/BTC-USD/20260602T000000Z" in entry["champion_note"]
    # The runtime loads the champion, not the newer folder.
    assert models.model_folder(local, SYMBOL).name == "20260601T000000Z"


def test_an_expired_champion_is_gone_after_a_failed_retrain(world):
    tmp_path, features, _ = world
    local, run = tmp_path / "models", tmp_path / "run"
    spec = SmallBuilder().spec(SYMBOL)
    lucky = write_model(local, SYMBOL, spec.names, spec.hash, stamp="20260401T000000Z", window=4, horizon=1)
    declare(local, lucky, passed=True, promoted_days_ago=45)
    failed = write_model(run, SYMBOL, spec.names, spec.hash, stamp="20260602T000000Z", window=4, horizon=1)
    declare(run, failed, passed=False)
    download(tmp_path, run, local, features, champion_days=30)
    entry = roster(local)
    assert entry["champion"] is None and pointer(local) is None
    assert "expired" in entry["champion_note"]
    # A fresh champion survives a failed retrain (and both files still agree).
    declare(local, lucky, passed=True, promoted_days_ago=1)
    download(tmp_path, run, local, features, champion_days=30)
    assert roster(local)["champion"] == pointer(local)["model_dir"] == "models/BTC-USD/20260401T000000Z"


def test_roster_is_believed_when_a_pointer_disagrees(world):
    tmp_path, _, _ = world
    local = tmp_path / "models"
    spec = SmallBuilder().spec(SYMBOL)
    first = write_model(local, SYMBOL, spec.names, spec.hash, stamp="20260401T000000Z")
    write_model(local, SYMBOL, spec.names, spec.hash, stamp="20260402T000000Z")
    declare(local, first, passed=True)
    # A crash after the pointer was rewritten but before roster.json: the roster still says `first`.
    (local / "champions" / f"{SYMBOL}.json").write_text(json.dumps({"model_dir": "models/BTC-USD/20260402T000000Z"}))
    assert models.model_folder(local, SYMBOL).name == "20260401T000000Z"
