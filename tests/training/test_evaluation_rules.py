"""Gate rules need evidence: a point win without significance, zero trades, or an interval
that reaches below zero never passes; every outcome line names the figure and threshold."""

from __future__ import annotations

import json

from training.families.evaluation import (
    AfterCost,
    BeatsBaseline,
    Comparison,
    EarnsAfterCosts,
    Evaluation,
    JudgedPart,
    MetricAbove,
    MinSamples,
    judge,
)


def _evaluation(*, p_value: float = 0.01, trades: int = 50, low: float = 0.01, net: float = 0.05) -> Evaluation:
    return Evaluation(
        family="demo", unit="BTC-USD", part=JudgedPart("holdout", 400, "2026-11-01T00:00:00Z", "2026-11-05T00:00:00Z"),
        metrics={"hit_rate": 0.56}, baselines={"last_move": {"hit_rate": 0.52}},
        comparisons=(Comparison("last_move", "hit_rate", 0.56, 0.52, p_value, "mcnemar"),),
        after_cost=AfterCost(net, trades, net + 0.01, 0.01, (low, 0.09), 0.01, {"sharpe": 1.2}),
    )


RULES = (MinSamples(100), MetricAbove("hit_rate", 0.5), BeatsBaseline("last_move", "hit_rate"), EarnsAfterCosts(30))


def test_a_significant_model_that_earns_passes_every_rule() -> None:
    verdict = judge(_evaluation(), RULES)
    assert verdict.passed, verdict.lines()
    assert all("pass" in line for line in verdict.lines())


def test_a_point_win_without_significance_fails() -> None:
    verdict = judge(_evaluation(p_value=0.3), RULES)
    assert not verdict.passed
    assert any("beats last move" in r and "p=0.3" in r for r in verdict.reasons)


def test_too_few_trades_or_an_interval_below_zero_fails_after_costs() -> None:
    assert not judge(_evaluation(trades=0), RULES).passed
    assert not judge(_evaluation(low=-0.01), RULES).passed


def test_no_rules_is_never_a_pass() -> None:
    assert not judge(_evaluation(), ()).passed


def test_evaluation_round_trips_through_strict_json() -> None:
    evaluation = _evaluation()
    text = json.dumps(evaluation.to_dict(), allow_nan=False)
    again = Evaluation.from_dict(json.loads(text))
    assert again == evaluation
