"""Model folders appear whole or not at all; quality gates decide champions, and say why not."""

from __future__ import annotations

import json

import pytest

from training import registry
from training.errors import BadTrainingConfig


def _metrics(net=0.05, trades=40, majority=-0.01, last_move=-0.02, accuracy=0.55):
    def block(net_return, n):
        return {"accuracy": accuracy, "auc": 0.56, "after_cost": {"trades": n, "net_return": net_return, "max_drawdown": 0.01}}

    return {"model": block(net, trades),
            "baselines": {"majority": block(majority, trades), "last_move": block(last_move, trades)}}  # fmt: skip


def _publish(root, metrics, rules=registry.GateRules(), write_model=lambda p: p.write_bytes(b"weights")):
    return registry.publish_model(
        root, "BTC-USD", write_model=write_model, config={"train": {}}, metrics=metrics,
        features={"feature_names": ["f0"]}, training_log=[], rules=rules,
    )  # fmt: skip


def test_passing_model_becomes_champion_and_the_roster_points_at_it(tmp_path):
    published = registry.promote_if_passed(tmp_path, _publish(tmp_path, _metrics()), feature_hash="sha256:x")
    assert published.promoted
    champ = registry.champion(tmp_path, "BTC-USD")
    assert champ["model_dir"] == f"models/BTC-USD/{published.timestamp}"
    assert champ["model_sha256"] == registry.sha256_file(published.folder / "model.pt")
    roster = registry.read_roster(tmp_path)
    assert roster["symbols"]["BTC-USD"]["champion"] == champ["model_dir"]


def test_failing_model_is_kept_but_not_promoted_and_says_why(tmp_path):
    first = registry.promote_if_passed(tmp_path, _publish(tmp_path, _metrics()), feature_hash="sha256:x")
    failing = _publish(tmp_path, _metrics(net=-0.03, trades=4))
    second = registry.promote_if_passed(tmp_path, failing, feature_hash="sha256:x")
    assert not second.promoted and second.folder.is_dir()
    assert any("test trades < 30" in r for r in second.reasons)
    assert any("net return after costs" in r for r in second.reasons)
    assert any("does not beat majority baseline" in r for r in second.reasons)
    assert registry.champion(tmp_path, "BTC-USD")["model_dir"].endswith(first.folder.name)
    entry = registry.read_roster(tmp_path)["symbols"]["BTC-USD"]
    assert entry["latest"].endswith(second.folder.name) and entry["latest_passed"] is False
    gates = json.loads((second.folder / "metrics.json").read_text())["gates"]
    assert gates["passed"] is False and gates["reasons"] == list(second.reasons)
    assert len(registry.list_models(tmp_path, "BTC-USD")) == 2


def test_a_crash_while_writing_leaves_no_folder_that_looks_complete(tmp_path):
    def crash(path):
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        _publish(tmp_path, _metrics(), write_model=crash)
    assert registry.list_models(tmp_path, "BTC-USD") == []
    assert list((tmp_path / "models" / "BTC-USD").iterdir()) == []


def test_checksums_catch_a_changed_file(tmp_path):
    published = _publish(tmp_path, _metrics())
    assert registry.verify_folder(published.folder) == []
    (published.folder / "model.pt").write_bytes(b"tampered")
    assert registry.verify_folder(published.folder) == ["model.pt"]


def test_gates_come_from_config_and_unknown_ones_are_refused():
    rules = registry.GateRules.from_config({"min_auc": 0.6, "beat_baselines": False})
    assert rules.judge(_metrics()) == ["AUC 0.560 < 0.600"]
    with pytest.raises(BadTrainingConfig, match="unknown quality gate"):
        registry.GateRules.from_config({"min_sharpe": 1})


@pytest.mark.parametrize("symbol", ["../etc", "btc-usd", "BTC/USD", ""])
def test_path_like_symbols_are_refused(symbol):
    with pytest.raises(BadTrainingConfig, match="invalid symbol"):
        registry.check_symbol(symbol)
