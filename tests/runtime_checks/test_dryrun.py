"""The dry run's measurements and its baseline fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime_checks.dryrun import binomial_p_value, direction_line, dryrun_symbol, evaluate
from runtime_checks.errors import CheckInputError
from runtime_checks.runner import run_dryrun_and_gate
from training.metrics import TradingCosts


def test_binomial_p_value_matches_exact_values():
    assert binomial_p_value(10, 10) == pytest.approx(1 / 1024)
    assert binomial_p_value(5, 10) == pytest.approx(638 / 1024)
    assert binomial_p_value(0, 10) == pytest.approx(1.0)
    assert binomial_p_value(5_300, 10_000) < 1e-8 < binomial_p_value(5_050, 10_000) < 0.2


def test_direction_line_reads_like_the_runbook():
    assert direction_line("BTC-USD", 0.653) == "BTC-USD: long @ 65.3% (LSTM: 0.653)"
    assert direction_line("ETH-USD", 0.4) == "ETH-USD: short @ 60.0% (LSTM: 0.400)"


def _walk(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.standard_normal(n) * 0.001))


@pytest.mark.parametrize("p, reason", [(0.7, "constant"), (None, "stuck near 0.5")])
def test_constant_or_stuck_predictions_are_degenerate(p, reason):
    close, ends = _walk(), np.arange(10, 2900)
    rng = np.random.default_rng(1)
    probs = np.full(len(ends), p) if p is not None else 0.5 + rng.uniform(-0.004, 0.004, len(ends))
    figures = evaluate(probs, close, ends, 1, majority_up=True, costs=TradingCosts())
    assert figures["degenerate"] and figures["degenerate_reason"] == reason


def test_perfect_foresight_scores_as_such_and_costs_are_charged():
    close, ends = _walk(), np.arange(10, 2900)
    probs = np.where(close[ends + 1] > close[ends], 0.9, 0.1)
    figures = evaluate(probs, close, ends, 1, majority_up=True, costs=TradingCosts(fee_bps=10))
    assert figures["hit_rate"] == 1.0 and figures["p_value"] < 1e-100 and not figures["degenerate"]
    free = evaluate(probs, close, ends, 1, majority_up=True, costs=TradingCosts(0, 0, 0))
    # A position is kept while the call stays on its side: each side change pays 13 bps
    # (the fee 10 + half the 2 bps spread + 2 bps slippage), the first open and last close too.
    side = np.where(probs > 0.5, 1.0, -1.0)
    sides_paid = np.abs(np.diff(np.concatenate([[0.0], side, [0.0]]))).sum()
    assert 0 < sides_paid < 2 * len(ends)
    assert free["after_cost_net_return"] - figures["after_cost_net_return"] == pytest.approx(sides_paid * 0.0013, rel=1e-6)


def test_hits_are_counted_on_non_overlapping_samples():
    close, ends = _walk(), np.arange(20, 2900)
    figures = evaluate(np.full(len(ends), 0.6), close, ends, 10, majority_up=True, costs=TradingCosts())
    assert figures["samples"] == math.ceil(len(ends) / 10) and figures["bars"] == len(ends)


def test_symbol_without_a_model_falls_back_to_the_baseline_and_says_so(dirs, builder, candles, key_file):
    features, models = dirs
    lines = []
    run = dryrun_symbol("ETH-USD", models_dir=models, features_dir=_eth(features, builder), builder=builder,
                        candles=candles, fetch_bars=600, on_line=lines.append)  # fmt: skip
    assert "no trained model" in lines[0] and "baseline" in lines[0]
    assert run.result.figures["trained"] is False and not run.result.passed
    assert "(baseline: last move:" in lines[1]


def test_dry_run_of_a_baseline_never_passes_the_gate(dirs, builder, candles, key_file):
    features, models = dirs
    outcome = run_dryrun_and_gate(["BTC-USD", "ETH-USD"], models_dir=models, features_dir=_eth(features, builder),
                                  builder=builder, candles=candles, key_file=key_file, fetch_bars=600)  # fmt: skip
    assert not outcome.passed
    assert any("ETH-USD: no trained model (a baseline never passes the gate)" in r for r in outcome.record["reasons"])
    assert outcome.record["trained"] == {"BTC-USD": True, "ETH-USD": False}


def test_iterations_print_the_newest_bars_with_the_loaded_model(dirs, builder, candles):
    features, models = dirs
    run = dryrun_symbol("BTC-USD", models_dir=models, features_dir=features, builder=builder, candles=candles,
                        iterations=3, fetch_bars=600)  # fmt: skip
    assert len(run.lines) == 3 and all(line.startswith("BTC-USD: ") and "(LSTM: " in line for line in run.lines)
    assert run.lines[-1].endswith("at 2026-06-03 23:55 UTC")  # the newest closed candle before "now"
    figures = run.result.figures
    assert figures["trained"] and figures["bars"] > 400 and figures["samples"] == math.ceil(figures["bars"] / 12)


def test_too_few_candles_for_the_window_is_refused(dirs, builder, frame_candles):
    features, models = dirs
    source = frame_candles()
    source.frame = source.frame.tail(40)
    with pytest.raises(CheckInputError, match="bars have complete features"):
        dryrun_symbol("BTC-USD", models_dir=models, features_dir=features, builder=builder, candles=source, iterations=5)


def _eth(features, builder):
    from runtime_checks.small import write_training_file

    write_training_file(features, "ETH-USD", mode="structured", days=3, builder=builder)
    return features


def test_bars_the_model_says_it_trained_on_are_not_out_of_sample(dirs, builder, candles):
    features, models = dirs
    folder = next((models / "models" / "BTC-USD").iterdir())
    (folder / "features.json").write_text('{"trained_until": "2026-06-03T00:00:00Z"}')  # a day later than the file
    run = dryrun_symbol("BTC-USD", models_dir=models, features_dir=features, builder=builder, candles=candles, fetch_bars=600)
    assert run.result.figures["out_of_sample_after"] == "2026-06-03 00:00 UTC"
    assert run.result.figures["bars"] == 287 - 12  # the last day after 00:00, less 12 bars whose label is not known yet


def test_only_bars_after_the_test_part_are_judged_and_the_record_says_which(dirs, builder, candles):
    features, models = dirs
    folder = next((models / "models" / "BTC-USD").iterdir())
    # The holdout: the training file ends at the cutoff, but its test part (which promoted
    # the model) ended a day earlier; only the day after it, and what came later, is judged.
    (folder / "features.json").write_text('{"trained_until": "2026-06-01T00:00:00Z", "judged_until": "2026-06-02T00:00:00Z"}')
    run = dryrun_symbol("BTC-USD", models_dir=models, features_dir=features, builder=builder, candles=candles, fetch_bars=900)
    figures = run.result.figures
    assert figures["out_of_sample_after"] == "2026-06-02 00:00 UTC"
    assert figures["judged_bars"]["first"] == "2026-06-02 00:05 UTC"
    assert figures["judged_bars"]["disjoint_from_training_validation_test"]
    assert figures["evidence"]["bars"] == figures["bars"] == figures["judged_bars"]["bars"]
