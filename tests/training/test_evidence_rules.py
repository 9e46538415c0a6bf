"""The evidence rules promotion and the gate share: a no-skill model fails them, real skill
passes, zero trades never pass, and the holdout is in no part of the split."""

from __future__ import annotations

import numpy as np
import pytest

from training.dataset import WindowSpec, holdout_ends, split_ends
from training.evidence import EvidenceRules, auc_p_value, direction_evidence
from training.metrics import TradingCosts

NO_COSTS = TradingCosts(0.0, 0.0, 0.0)


def market(n: int, skill: float, seed: int):
    rng = np.random.default_rng(seed)
    r = rng.normal(0, 0.002, n)
    signal = np.sign(r) * skill + rng.normal(0, 1, n)
    p = 1 / (1 + np.exp(-signal))
    base = {"majority": np.full(n, 0.6), "last_move": np.where(np.roll(r, 1) > 0, 0.6, 0.4)}
    return p, r > 0, r, base


def test_a_no_skill_model_whose_confidence_is_not_half_still_fails():
    p, up, r, base = market(3000, 0.0, seed=1)
    p = 0.5 + (p - 0.5) * 0.4  # confidences far from 50%, no information
    e = direction_evidence(p, up, r, 1, NO_COSTS, 0.0, base, resamples=300)
    assert np.maximum(p, 1 - p).mean() > 0.53
    failed = [line for ok, line in EvidenceRules().judge(e) if not ok]
    assert any(line.startswith("discrimination: AUC") and "p=" in line for line in failed), failed


def test_real_skill_passes_every_rule_and_each_line_names_its_figure():
    p, up, r, base = market(3000, 0.6, seed=2)
    e = direction_evidence(p, up, r, 1, TradingCosts(1.0, 0.5, 0.5), 0.0, base, resamples=300)
    verdict = EvidenceRules().judge(e)
    assert all(ok for ok, _ in verdict), verdict
    assert any("95% interval [" in line and "p=" in line for _, line in verdict)


def test_zero_trades_never_pass_and_the_rules_refuse_to_be_switched_off():
    p, up, r, base = market(3000, 0.6, seed=3)
    e = direction_evidence(np.full(3000, 0.5), up, r, 1, NO_COSTS, 0.0, base, resamples=100)
    assert e["trades"] == 0
    assert not all(ok for ok, _ in EvidenceRules().judge(e))
    with pytest.raises(ValueError):
        EvidenceRules(min_trades=0)
    with pytest.raises(ValueError):
        EvidenceRules(alpha=1.0)


def test_auc_p_value_is_calibrated_under_no_skill():
    rng = np.random.default_rng(4)
    ps = [auc_p_value(rng.integers(0, 2, 400), rng.random(400)) for _ in range(400)]
    assert 0.02 < np.mean(np.array(ps) <= 0.05) < 0.09


def test_holdout_is_after_the_test_labels_and_in_no_part():
    spec = WindowSpec(window=20, horizon=3, longest_feature_window=30, holdout_fraction=0.2)
    train, val, test = split_ends(5000, spec)
    hold = holdout_ends(5000, spec)
    assert len(hold) == int((5000 - 3 - 19) * 0.2)
    assert hold[0] > test[-1] + spec.horizon
    assert not set(hold) & (set(train) | set(val) | set(test))
