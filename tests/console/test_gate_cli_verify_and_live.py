"""`console gate verify`, `console gate status`, `console live` and `console check`, driven
as an operator would: the real executable in a subprocess, a real state dir and models dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.console.cli import assert_one_line_error, console

pytestmark = pytest.mark.slow  # every test drives the real executable in a subprocess

SYMBOL = "BTC-USD"


EVIDENCE = {"samples": 2000, "bars": 2000, "accuracy": 0.53, "auc": 0.54, "auc_p_value": 0.001, "trades": 120,
            "decisions_in_market": 1900, "trade_hit_rate": 0.53, "trade_hit_p_value": 0.004, "net_return": 0.02,
            "net_interval": [0.004, 0.036], "net_p_value": 0.01, "round_trip_cost_bps": 26.0,
            "baselines": {"majority": {"accuracy": 0.5, "p_value": 0.003}, "last_move": {"accuracy": 0.51, "p_value": 0.02}}}  # fmt: skip


def _passing_results():
    from runtime_checks.checks import ALIGNMENT, DRYRUN

    figures = {"trained": True, "samples": 2000, "hit_rate": 0.53, "p_value": 0.004, "baseline_majority_hit_rate": 0.5,
               "baseline_last_move_hit_rate": 0.51, "mean_confidence": 0.56, "degenerate": False,
               "degenerate_reason": "", "after_cost_net_return": 0.02,
               "evidence": EVIDENCE}  # fmt: skip
    return [ALIGNMENT.result(SYMBOL, True, f"{SYMBOL}: aligned, 73 features"),
            DRYRUN.result(SYMBOL, True, f"{SYMBOL}: LSTM, 2000 out-of-sample bars, hit rate 53.0%", figures)]


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith(("AWS_", "RC_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return {"RC_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}


@pytest.fixture
def models(tmp_path):
    """A models dir whose model was trained on today's real feature spec for BTC-USD."""
    from runtime_checks.small import write_model
    from training.features.spec import spec_for

    spec = spec_for(SYMBOL)
    write_model(tmp_path / "models", SYMBOL, spec.names, spec.hash)
    return tmp_path / "models"


def _record(models: Path, state: Path, results=None, **kwargs):
    """Record a gate the way `console dryrun` does: next to the models and in the state store."""
    from console.state import StateStore
    from console.checking import store_gate, store_results
    from runtime_checks import gate
    from training.features.spec import spec_for

    record = gate.record_gate(models, results or _passing_results(), symbols=[SYMBOL],
                              feature_hashes={SYMBOL: spec_for(SYMBOL).hash}, key_file=state / "gate.key", **kwargs)
    store = StateStore.open(state)
    store_results(store, results or _passing_results())
    store_gate(store, record)
    store.close()
    return record


def test_gate_verify_exits_0_with_a_valid_pass(env, models, tmp_path):
    _record(models, tmp_path / "state")
    proc = console("gate", "verify", "--models", str(models), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "valid pass for BTC-USD" in proc.stdout


def test_gate_verify_exits_4_with_one_line_when_a_model_file_changed(env, models, tmp_path):
    _record(models, tmp_path / "state")
    model = next((models / "models" / SYMBOL).iterdir()) / "model.pt"
    model.write_bytes(model.read_bytes()[:-1] + b"x")
    proc = console("gate", "verify", "--models", str(models), env=env)
    assert_one_line_error(proc, 4, "model.pt changed since the gate passed")


def test_gate_verify_exits_4_on_a_tampered_record(env, models, tmp_path):
    _record(models, tmp_path / "state")
    path = models / "gate.json"
    data = json.loads(path.read_text())
    data["expires_at"] += 30 * 86400
    path.write_text(json.dumps(data))
    assert_one_line_error(console("gate", "verify", "--models", str(models), env=env), 4, "does not match its signature")


def test_gate_verify_exits_4_without_any_record(env, models):
    assert_one_line_error(console("gate", "verify", "--models", str(models), env=env), 4, "no gate record in")


def test_live_runs_the_command_with_the_models_dir_only_after_a_pass(env, models, tmp_path):
    _record(models, tmp_path / "state")
    marker = tmp_path / "ran.txt"
    proc = console("live", "--models", str(models), "--", "sh", "-c", f'echo "$RC_MODELS_DIR" > {marker}; exit 7', env=env)
    assert proc.returncode == 7, proc.stderr  # the operator's command's own exit status
    assert marker.read_text().strip() == str(models.resolve())


def test_live_refuses_with_4_and_runs_nothing_without_a_pass(env, models, tmp_path):
    _record(models, tmp_path / "state", results=_passing_results()[:1])  # no dry run: a failed gate
    marker = tmp_path / "ran.txt"
    proc = console("live", "--models", str(models), "--", "sh", "-c", f"touch {marker}", env=env)
    assert_one_line_error(proc, 4, "the last dry run failed the gate")
    assert not marker.exists()


def test_gate_status_shows_the_record_and_why_it_does_not_pass(env, models, tmp_path):
    _record(models, tmp_path / "state", results=_passing_results()[:1])
    proc = console("gate", "status", "--models", str(models), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "FAIL for BTC-USD" in proc.stdout and "why not: BTC-USD: no dry run" in proc.stdout
    assert "verdict: NOT valid" in proc.stdout


def test_check_shows_the_stored_results_in_full(env, models, tmp_path):
    _record(models, tmp_path / "state")
    proc = console("check", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    shown = {(r["check"], r["symbol"]): r for r in json.loads(proc.stdout)}
    assert shown[("dryrun", SYMBOL)]["figures"]["hit_rate"] == 0.53
    table = console("check", env=env)
    assert "hit rate 53.0%" in table.stdout and "alignment" in table.stdout


def test_check_alignment_on_an_empty_models_dir_is_one_line_exit_2(env, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = console("check", "alignment", "--models", str(tmp_path / "empty"),
                   env={**env, "RC_COINBASE_URL": "http://127.0.0.1:9"})
    assert_one_line_error(proc, 2, "no trained models in")


def test_dryrun_on_a_missing_models_dir_is_one_line_exit_2(env, tmp_path):
    proc = console("dryrun", "--models", str(tmp_path / "nope"), env={**env, "RC_COINBASE_URL": "http://127.0.0.1:9"})
    assert_one_line_error(proc, 2, "does not exist")


def test_bad_symbol_is_refused_before_anything_runs(env, models):
    proc = console("dryrun", "--symbols", "BTC-USD;rm", "--models", str(models), env=env)
    assert_one_line_error(proc, 2, "is not a symbol")
