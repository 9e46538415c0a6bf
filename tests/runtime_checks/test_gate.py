"""The gate: criteria from results, a signed record for exact files, and everything that voids it."""

from __future__ import annotations

import json
import os
import time

import pytest

from runtime_checks import gate
from runtime_checks.checks import ALIGNMENT, DRYRUN
from runtime_checks.errors import GateNotPassed, TamperedGateRecord
from runtime_checks.small import SmallBuilder, write_model

GOOD = {
    "trained": True, "samples": 2000, "hit_rate": 0.53, "p_value": 0.004, "baseline_majority_hit_rate": 0.50,
    "baseline_last_move_hit_rate": 0.51, "mean_confidence": 0.56, "degenerate": False, "degenerate_reason": "",
    "after_cost_net_return": 0.02,
    "evidence": {
        "samples": 2000, "bars": 2000, "accuracy": 0.53, "auc": 0.54, "auc_p_value": 0.001, "trades": 120,
        "decisions_in_market": 1900, "trade_hit_rate": 0.53, "trade_hit_p_value": 0.004, "net_return": 0.02,
        "net_interval": [0.004, 0.036], "net_p_value": 0.01, "round_trip_cost_bps": 26.0,
        "baselines": {"majority": {"accuracy": 0.5, "p_value": 0.003}, "last_move": {"accuracy": 0.51, "p_value": 0.02}},
    },
}  # fmt: skip


def evidence(**changes):
    """GOOD's evidence with ``changes`` (``baselines`` merged one level down)."""
    e = {**GOOD["evidence"], **{k: v for k, v in changes.items() if k != "baselines"}}
    e["baselines"] = {**GOOD["evidence"]["baselines"], **changes.get("baselines", {})}
    return {"evidence": e}


def results(symbol="BTC-USD", aligned=True, **figures):
    """Honest synthetic results: what a dry run of a model with a small real edge reports."""
    return [ALIGNMENT.result(symbol, aligned, f"{symbol}: aligned" if aligned else f"{symbol}: misaligned"),
            DRYRUN.result(symbol, True, f"{symbol}: dry run", {**GOOD, **figures})]


def spec_hash(symbol, builder=SmallBuilder()):
    return builder.spec(symbol).hash


@pytest.fixture
def passed(dirs, key_file):
    _, models = dirs
    record = gate.record_gate(models, results(), symbols=["BTC-USD"], feature_hashes={"BTC-USD": spec_hash("BTC-USD")},
                              key_file=key_file)  # fmt: skip
    assert record["passed"], record["reasons"]
    return models, record


def verify(models, key_file, **kwargs):
    return gate.verify_gate(models, key_file=key_file, feature_hash_of=kwargs.pop("feature_hash_of", spec_hash), **kwargs)


def test_valid_pass_verifies_for_exactly_the_recorded_files(passed, key_file):
    models, record = passed
    assert verify(models, key_file)["id"] == record["id"]
    assert (models / "gate.json").is_file()
    assert any(name.endswith("/model.pt") for name in record["model_hashes"])
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    "figures, reason",
    [
        (evidence(trade_hit_rate=0.50), "hit rate of the rule that trades 50.0% on 1900 decisions vs 50.0%, p=0.004"),
        (evidence(trade_hit_p_value=0.2), "hit rate of the rule that trades 53.0% on 1900 decisions vs 50.0%, p=0.2"),
        (evidence(baselines={"last_move": {"accuracy": 0.51, "p_value": 0.3}}), "beats the last move baseline: accuracy 53.0% vs 51.0% on the same bars, McNemar p=0.3"),
        (evidence(baselines={"majority": {"accuracy": 0.54, "p_value": 0.001}}), "beats the majority baseline: accuracy 53.0% vs 54.0%"),
        ({"degenerate": True, "degenerate_reason": "stuck near 0.5"}, "degenerate (stuck near 0.5)"),
        (evidence(auc=0.51, auc_p_value=0.3), "discrimination: AUC 0.5100 vs 0.5, p=0.3"),
        (evidence(net_return=-0.001), "after costs -0.0010 vs +0.0000 (26 bps round trip), 95% interval [+0.0040, +0.0360], p=0.01"),
        (evidence(net_p_value=0.2, net_interval=[-0.01, 0.05]), "95% interval [-0.0100, +0.0500], p=0.2"),
        (evidence(trades=0), "trades 0 (need 30)"),
        (evidence(samples=40), "judged samples 40 (need 100"),
        ({"evidence": None}, "measured no evidence"),
        ({"trained": False}, "a baseline never passes the gate"),
    ],
)  # fmt: skip
def test_each_criterion_fails_the_gate(figures, reason):
    decision = gate.decide(results(**figures), ["BTC-USD"], gate.GateCriteria())
    assert not decision.passed
    assert any(reason in r for r in decision.reasons), decision.reasons


def test_misaligned_or_missing_symbol_fails_the_gate():
    assert "features are misaligned" in gate.decide(results(aligned=False), ["BTC-USD"], gate.GateCriteria()).reasons[0]
    assert "ETH-USD: alignment was not checked" in gate.decide(results(), ["BTC-USD", "ETH-USD"], gate.GateCriteria()).reasons


def test_criteria_come_from_settings_like_objects():
    class Settings:
        expiry_hours = 2.0
        min_hit_rate = 0.52

    criteria = gate.GateCriteria.from_settings(Settings())
    assert criteria.expiry_hours == 2.0 and criteria.min_hit_rate == 0.52 and criteria.min_samples == 100
    assert gate.decide(results(), ["BTC-USD"], criteria).passed
    assert not gate.decide(results(**evidence(trade_hit_rate=0.515)), ["BTC-USD"], criteria).passed  # not 52%


def test_criteria_refuse_a_level_that_would_let_anything_through():
    with pytest.raises(ValueError, match="significance level"):
        gate.GateCriteria(max_p_value=0.9)
    with pytest.raises(ValueError, match="zero trades never pass"):
        gate.GateCriteria(min_trades=0)


def test_failed_decision_is_recorded_but_never_verifies(dirs, key_file):
    _, models = dirs
    gate.record_gate(models, results(**evidence(trade_hit_rate=0.49)), symbols=["BTC-USD"],
                     feature_hashes={"BTC-USD": spec_hash("BTC-USD")}, key_file=key_file)  # fmt: skip
    with pytest.raises(GateNotPassed, match="the last dry run failed the gate: BTC-USD: hit rate of the rule that trades 49.0%") as err:
        verify(models, key_file)
    assert err.value.exit_code == 4


def test_changed_model_file_voids_the_pass(passed, key_file):
    models, _ = passed
    model = next((models / "models" / "BTC-USD").iterdir()) / "model.pt"
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(GateNotPassed, match=r"model file models/BTC-USD/.*/model.pt changed since the gate passed"):
        verify(models, key_file)


def test_newer_model_folder_voids_the_pass(passed, key_file, builder):
    models, _ = passed
    spec = builder.spec("BTC-USD")
    write_model(models, "BTC-USD", spec.names, spec.hash, stamp="20260602T000000Z", seed=1)
    with pytest.raises(GateNotPassed, match="model folder for BTC-USD changed"):
        verify(models, key_file)


def test_changed_feature_spec_voids_the_pass(passed, key_file):
    models, _ = passed
    drifted = SmallBuilder(version="small-2")
    with pytest.raises(GateNotPassed, match="feature spec for BTC-USD changed since the gate passed"):
        verify(models, key_file, feature_hash_of=lambda s: drifted.spec(s).hash)


def test_expired_pass_is_refused(passed, key_file):
    models, record = passed
    with pytest.raises(GateNotPassed, match="expired"):
        verify(models, key_file, now=record["expires_at"] + 1)
    assert verify(models, key_file, now=record["expires_at"] - 1)


def test_hand_edited_record_is_detected_as_tampered(dirs, key_file):
    _, models = dirs
    gate.record_gate(models, results(**evidence(trade_hit_rate=0.49)), symbols=["BTC-USD"], feature_hashes={"BTC-USD": spec_hash("BTC-USD")},
                     key_file=key_file)  # fmt: skip
    path = models / "gate.json"
    data = json.loads(path.read_text())
    data.update(passed=True, reasons=[], expires_at=time.time() + 10 * 86400)
    path.write_text(json.dumps(data))
    with pytest.raises(TamperedGateRecord, match="does not match its signature") as err:
        verify(models, key_file)
    assert err.value.exit_code == 4


def test_torn_record_is_tampered_not_a_crash(passed, key_file):
    models, _ = passed
    (models / "gate.json").write_text('{"passed": tru')
    with pytest.raises(TamperedGateRecord, match="not valid JSON"):
        verify(models, key_file)


def test_record_signed_with_another_key_is_refused(passed, tmp_path):
    models, _ = passed
    other = tmp_path / "elsewhere" / "gate.key"
    other.parent.mkdir()
    fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"f" * 64)
    os.close(fd)
    with pytest.raises(TamperedGateRecord):
        verify(models, other)


def test_record_differing_from_the_state_store_copy_is_refused(passed, key_file):
    models, record = passed
    older = {**record, "id": "someone-else"}
    with pytest.raises(TamperedGateRecord, match="differs from the state store's copy"):
        verify(models, key_file, state_copy=older)
    assert verify(models, key_file, state_copy=record)


def test_key_readable_by_others_is_refused(passed, key_file):
    models, _ = passed
    key_file.chmod(0o644)
    with pytest.raises(GateNotPassed, match="readable by others"):
        verify(models, key_file)


def test_no_record_no_key_and_missing_dir_all_refuse(dirs, key_file, tmp_path):
    _, models = dirs
    with pytest.raises(GateNotPassed, match="no gate record in"):
        verify(models, key_file)
    with pytest.raises(GateNotPassed, match="does not exist"):
        verify(tmp_path / "nowhere", key_file)


def test_empty_models_dir_never_passes(tmp_path, key_file):
    empty = tmp_path / "empty"
    empty.mkdir()
    record = gate.record_gate(empty, [], symbols=[], feature_hashes={}, key_file=key_file)
    assert not record["passed"]
    with pytest.raises(GateNotPassed):
        verify(empty, key_file)


def test_symbol_not_covered_by_the_pass_is_refused(passed, key_file, builder):
    models, _ = passed
    spec = builder.spec("ETH-USD")
    write_model(models, "ETH-USD", spec.names, spec.hash)
    with pytest.raises(GateNotPassed, match="ETH-USD not covered by the gate pass"):
        verify(models, key_file)
    assert verify(models, key_file, symbols=["BTC-USD"])


def test_sinks_receive_the_signed_record(dirs, key_file):
    _, models = dirs
    seen = []
    gate.record_gate(models, results(), symbols=["BTC-USD"], feature_hashes={"BTC-USD": spec_hash("BTC-USD")},
                     key_file=key_file, sinks=[lambda name, body: seen.append((name, json.loads(body)))])  # fmt: skip
    assert seen[0][0] == "gate.json" and seen[0][1]["signature"]
