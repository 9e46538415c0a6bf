"""How a ``gbm`` head is judged: the direction models' test, after this coin's own costs.

A head calls the same thing the LSTM does (P(up) ``horizon`` bars ahead), so it is judged
by the same code on the same kind of part (`training.families.lstm.judge.evaluation`):
the test part, which neither boosting nor its early stopping nor the band choice saw;
McNemar on accuracy against the majority and last-move baselines (non-overlapping
samples); the long/short rule after the coin's fees, spread and slippage with a
block-bootstrap interval and p-value, paired against each baseline's.

`gbm_rules`: enough samples, significantly better accuracy than both baselines, and a
significantly positive net result after costs over enough trades. A random walk has
nothing to learn, so a head on one fails at least one of them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from training.families.evaluation import BeatsBaseline, EarnsAfterCosts, Evaluation, GateRule, MinSamples
from training.families.gbm.params import GbmParams
from training.families.lstm.judge import BASELINES, judged_figures
from training.families.lstm.judge import evaluation as direction_evaluation

if TYPE_CHECKING:  # pragma: no cover
    from training.families.gbm import FittedGbm

FAMILY = "gbm"


def evaluation(fitted: "FittedGbm") -> Evaluation:
    ds = fitted.dataset
    judged = direction_evaluation(fitted.unit, ds, fitted.probabilities(ds.test_ends), fitted.costs, fitted.threshold)
    return replace(judged, family=FAMILY)


def figures(fitted: "FittedGbm") -> dict:
    """Test-part figures of the head and both baselines (``metrics.json``)."""
    ds = fitted.dataset
    return judged_figures(ds, fitted.probabilities(ds.test_ends), fitted.costs, fitted.threshold)


def gbm_rules(params: GbmParams) -> tuple[GateRule, ...]:
    g = params.gates
    rules: list[GateRule] = [MinSamples(g.min_samples)]
    if g.beat_baselines:
        rules += [BeatsBaseline(base, "accuracy", g.alpha) for base in BASELINES]
    rules.append(EarnsAfterCosts(min_trades=g.min_trades, alpha=g.alpha))
    return tuple(rules)
