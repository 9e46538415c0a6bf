"""Honesty: on the simulator's random walk the gate fails; on its structured market a
properly fitted model can pass. Same model recipe, same seed, same criteria, same costs.

The model is fitted on the training feature file alone (logistic regression, see
`helpers.fit_linear_model`) and saved as a real model.pt, so the dry run goes through
the real path: candles over HTTP from the market simulator, the feature builder, the
checkpoint's scaler and network, then the gate. (The real trainer trains only on the
shipped feature spec, 54-73 features on one-minute candles: minutes per symbol on two CPU
cores, too slow for this suite. These are honest synthetic predictions in that sense.)

Costs: the models carry their venue's costs in config.json. The random walk is judged at
zero costs, so that the criteria measuring skill (significance, baselines) are the ones
that must refuse it; the structured market is judged at the default 13 bps a side and
passes, and fails once costs exceed what its edge can pay.
"""

from __future__ import annotations

import pytest

from remote.sandbox.market_server import MarketSimulator
from runtime_checks import gate
from runtime_checks.inputs import CoinbaseCandles
from runtime_checks.runner import run_dryrun_and_gate
from runtime_checks.small import CUTOFF, SmallBuilder, fit_linear_model, write_training_file

SEED = 11
DAYS = 60
NOW = CUTOFF + DAYS * 86_400 + 30
ZERO_FEES = {"fee_bps": 0.0, "spread_bps": 0.0, "slippage_bps": 0.0}
DEFAULT_COSTS = {"fee_bps": 10.0, "spread_bps": 2.0, "slippage_bps": 2.0}


def dry_run(tmp_path, key_file, mode, costs=ZERO_FEES):
    builder = SmallBuilder()
    write_training_file(tmp_path / "features", "BTC-USD", mode=mode, days=DAYS, seed=SEED, builder=builder)
    fit_linear_model(tmp_path / "features", tmp_path / "models", "BTC-USD", horizon=1, costs=costs)
    with MarketSimulator(mode=mode, seed=SEED, rate_limit_per_s=1000) as sim:
        sim.clock = lambda: NOW
        return run_dryrun_and_gate(
            ["BTC-USD"], models_dir=tmp_path / "models", features_dir=tmp_path / "features", builder=builder,
            candles=CoinbaseCandles(sim.url, clock=lambda: NOW, requests_per_s=500), key_file=key_file,
            fetch_bars=DAYS * 288,
        )


@pytest.mark.slow
def test_gate_fails_on_the_random_walk(tmp_path, key_file):
    outcome = dry_run(tmp_path, key_file, "random_walk")
    figures = outcome.results[-1].figures
    assert not outcome.passed, outcome.results[-1].summary
    assert figures["samples"] > 15_000 and figures["p_value"] > 0.05
    # It fails on the evidence of skill itself (discrimination at least), each line naming
    # its figure, threshold and p-value.
    assert any("discrimination: AUC" in r and "vs 0.5, p=" in r for r in outcome.record["reasons"])
    with pytest.raises(gate.GateNotPassed):
        gate.verify_gate(tmp_path / "models", key_file=key_file, feature_hash_of=lambda s: SmallBuilder().spec(s).hash)


@pytest.mark.slow
def test_fitted_model_passes_on_the_structured_market_after_default_costs(tmp_path, key_file):
    outcome = dry_run(tmp_path, key_file, "structured", costs=DEFAULT_COSTS)
    figures = outcome.results[-1].figures
    assert outcome.passed, outcome.record["reasons"]
    assert outcome.record["verdicts"]["BTC-USD"] and all(" - pass" in line for line in outcome.record["verdicts"]["BTC-USD"])
    assert outcome.record["judged_bars"]["BTC-USD"]["disjoint_from_training_validation_test"]
    assert figures["hit_rate"] > max(figures["baseline_majority_hit_rate"], figures["baseline_last_move_hit_rate"])
    assert figures["p_value"] < 0.01
    assert figures["after_cost_net_return"] > 0 and figures["round_trip_cost_bps"] == 26.0
    record = gate.verify_gate(tmp_path / "models", key_file=key_file, feature_hash_of=lambda s: SmallBuilder().spec(s).hash)
    assert record["id"] == outcome.record["id"]


@pytest.mark.slow
def test_costs_the_edge_cannot_pay_fail_the_gate(tmp_path, key_file):
    outcome = dry_run(tmp_path, key_file, "structured", costs={"fee_bps": 150.0, "spread_bps": 20.0, "slippage_bps": 20.0})
    assert not outcome.passed
    assert any("after costs" in r for r in outcome.record["reasons"])
    assert not any("discrimination" in r or "McNemar" in r for r in outcome.record["reasons"])
