"""The regime model's samples and how it is judged: on the test part, against persistence
and majority, with a block-bootstrap significance figure.

Samples are days *t* with a full feature window behind them, a full persistence window
behind them and a full label window after them, split chronologically 60/20/20 into
train, validation and test with ``horizon`` days purged between parts (a label looks
``horizon`` days ahead, so it never reaches into the next part). The rule's thresholds,
the feature scaling and the majority regime come from the training part only.

On the test part the model, the persistence baseline and the majority baseline are
scored on the same days: ``test_accuracy`` and ``test_f1_macro`` (scikit-learn,
macro over the five regimes). Two one-sided tests judge the model against each baseline,
and the comparison carries the *larger* p-value (both must agree):

- the model's F1 minus the baseline's, resampled in circular blocks of ``2 * horizon``
  days (`training.stats.block_bootstrap`: neighbouring labels share days), which also
  gives the interval;
- an exact McNemar test of accuracy with the disagreement counts of all test days divided
  by ``horizon`` (a label window spans ``horizon`` days, so that is how many independent
  windows the days hold). (The bootstrap alone passed a random walk
  now and then: persistence's guess of day *t + horizon* is day *t*'s label, which ties
  errors together further than a block reaches.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training import stats
from training.errors import NotEnoughData
from training.families.evaluation import (
    BeatsBaseline,
    Comparison,
    Evaluation,
    GateRule,
    JudgedPart,
    MinSamples,
)
from training.families.investment import CONTEXT_FEATURES, REGIMES
from training.families.investment.data import split_days
from training.families.regime.rule import RegimeRule, macro_f1

FAMILY = "regime"
BASELINES = ("persistence", "majority")
MIN_TRAIN_SAMPLES = 60
RESAMPLES = 1000


@dataclass(frozen=True)
class RegimeSamples:
    """The context table turned into windows, labels and the three parts."""

    dates: np.ndarray
    x: np.ndarray
    """Scaled context features, one row per day."""
    labels: np.ndarray
    persistence: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    """Sample end days (indices into the rows) of each part."""
    rule: RegimeRule
    mean: np.ndarray
    std: np.ndarray
    majority: int
    window: int

    def windows(self, ends: np.ndarray) -> np.ndarray:
        """(samples, window, features) float32."""
        idx = np.asarray(ends)[:, None] + np.arange(-self.window + 1, 1)[None, :]
        return self.x[idx].astype(np.float32)


def prepare(frame: pd.DataFrame, window: int, horizon: int) -> RegimeSamples:
    """Samples of a checked context table (`training.families.investment.data.check_table`)."""
    days = len(frame)
    first = max(window, horizon) - 1
    ends = np.arange(first, days - horizon)
    train_s, val_s, test_s = split_days(len(ends), gap=horizon)
    train, val, test = ends[train_s], ends[val_s], ends[test_s]
    if len(train) < MIN_TRAIN_SAMPLES or len(val) < 10 or len(test) < 10:
        need = int((MIN_TRAIN_SAMPLES + 2 * horizon) / 0.6) + first + horizon + 1
        raise NotEnoughData(
            f"{days} context days give {len(train)}/{len(val)}/{len(test)} train/validation/test samples "
            f"for window {window} and horizon {horizon}; give at least {need} days (--max-days)"
        )
    returns = frame["spy_return_1d"].to_numpy(dtype=np.float64)
    seen = int(train[-1]) + horizon + 1  # the days the training labels look at
    rule = RegimeRule.fit(returns[:seen], horizon)
    raw = frame.loc[:, list(CONTEXT_FEATURES)].to_numpy(dtype=np.float64)
    mean = raw[: int(train[-1]) + 1].mean(axis=0)
    std = raw[: int(train[-1]) + 1].std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    labels = rule.forward(returns)
    majority = int(np.bincount(labels[train], minlength=len(REGIMES)).argmax())
    return RegimeSamples(
        dates=frame["date"].to_numpy(),
        x=(raw - mean) / std,
        labels=labels,
        persistence=rule.trailing(returns),
        train=train,
        val=val,
        test=test,
        rule=rule,
        mean=mean,
        std=std,
        majority=majority,
        window=window,
    )


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Square-root inverse-frequency weights over the five regimes (mean 1 over the regimes
    that occur): a rare regime (a panic) is not ignored, yet accuracy is not given up for it
    wholesale; a regime absent from training weighs 1."""
    counts = np.bincount(labels, minlength=len(REGIMES)).astype(np.float64)
    weights = np.where(counts > 0, np.sqrt(counts.sum() / np.maximum(counts, 1)), 1.0)
    return weights / weights[counts > 0].mean()


def evaluation(samples: RegimeSamples, probabilities: np.ndarray, alpha: float) -> Evaluation:
    """The model's test figures beside both baselines', with paired bootstrap comparisons."""
    from sklearn.metrics import accuracy_score, f1_score

    truth = samples.labels[samples.test]
    predicted = np.asarray(probabilities).argmax(axis=1)
    baselines = {
        "persistence": samples.persistence[samples.test],
        "majority": np.full(len(truth), samples.majority),
    }
    labels = list(range(len(REGIMES)))

    def figures(guess: np.ndarray) -> dict[str, float]:
        return {
            "test_accuracy": float(accuracy_score(truth, guess)),
            "test_f1_macro": float(f1_score(truth, guess, labels=labels, average="macro", zero_division=0)),
        }

    block = 2 * samples.rule.horizon
    comparisons = []
    for name, guess in baselines.items():

        def difference(idx: np.ndarray, guess: np.ndarray = guess) -> float:
            return macro_f1(truth[idx], predicted[idx]) - macro_f1(truth[idx], guess[idx])

        boot = stats.block_bootstrap(difference, len(truth), block=block, resamples=RESAMPLES)
        exact = _mcnemar_per_window(predicted == truth, guess == truth, samples.rule.horizon)
        comparisons.append(
            Comparison(
                baseline=name,
                metric="test_f1_macro",
                model=figures(predicted)["test_f1_macro"],
                baseline_value=figures(guess)["test_f1_macro"],
                p_value=max(boot.p_value, exact),
                test=(
                    f"the larger of: block bootstrap of the F1 difference (blocks of {block} days, "
                    f"p={boot.p_value:.3g}); exact McNemar per {samples.rule.horizon}-day window (p={exact:.3g})"
                ),
                interval=boot.interval,
            )
        )
    dates = samples.dates[samples.test]
    return Evaluation(
        family=FAMILY,
        unit=FAMILY,
        part=JudgedPart("test", len(truth), _iso(dates[0]), _iso(dates[-1])),
        metrics=figures(predicted),
        baselines={name: figures(guess) for name, guess in baselines.items()},
        comparisons=tuple(comparisons),
    )


def _mcnemar_per_window(model_right: np.ndarray, baseline_right: np.ndarray, horizon: int) -> float:
    """McNemar's exact one-sided p with the disagreements counted per independent window."""
    only_model = int(np.sum(model_right & ~baseline_right)) // horizon
    only_base = int(np.sum(~model_right & baseline_right)) // horizon
    return stats.binomial_sf(only_model, only_model + only_base)


def regime_rules(min_samples: int, alpha: float) -> tuple[GateRule, ...]:
    """Enough test days, and a macro-F1 above persistence's, significant at ``alpha``.

    The majority baseline is judged and shown beside, but does not gate: one regime always
    named scores a macro-F1 near 0.1, which any model that names several beats."""
    return (MinSamples(min_samples), BeatsBaseline("persistence", "test_f1_macro", alpha))


def _iso(value: np.datetime64) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")
