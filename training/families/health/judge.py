"""The health model's samples and how it is judged against the relative-strength rule.

A sample is one asset on one day. Its **target** is the asset's next-21-day
risk-adjusted return against the market: the ``rel_strength_21d`` of the row 21 trading
days later (its return over those 21 days minus SPY's) divided by that row's ``vol_21d``
(the same 21 days: known only then, so it is only ever a label). Taking SPY's return out
keeps the market's own swings, which every asset shares, from deciding the ranking.
Days are split chronologically 60/20/20 into train, validation and test, with 21 days
purged between parts so no label crosses into the next part. Scaling, the read-out,
the score scale and the volatility buckets come from the training part only.

On the test part: ``test_recon_mse`` (the autoencoder's reconstruction error on the
scaled features) and ``test_health_correlation``: the Spearman correlation between the
health score and the target across the assets of each test day, averaged over the test
days (cross-sectional: which assets will do better, not whether the market will rise;
a correlation pooled over days is swamped by the market's own moves). The rule
baseline's is computed on the same rows. The daily differences are tested two ways and
the comparison carries the larger one-sided p-value: Student's t on the means of whole
63-day blocks (`BLOCK_DAYS`; batch means, counted back from the newest day) and a block
sign-flip test over 63-day blocks counted from the oldest (its last block may be shorter).
Neighbouring days' targets share 20 of their 21 days, and a score read from 63-day windows
stays alike for 63 days, so the daily figures are linked that far. A 3,500-day table leaves
about eleven test blocks: too few for a block bootstrap's p-value, which fell under 0.05 for
6 to 14 % of 200 of the sandbox's random walks (``scripts/bench/health_gate_null.py``; the
whole gate passed 1 %); the bootstrap still gives the interval shown. The model's own
correlation is tested the same way against zero (``no_skill``).
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
from training.families.health.score import FORWARD_DAYS, relative_strength_rank
from training.families.investment import ASSET_FEATURES
from training.families.investment.data import split_days

FAMILY = "health"
RESAMPLES = 1000
BLOCK_DAYS = 63
"""Block length of the significance tests: the longest feature window (see the module docstring)."""
MIN_TRAIN_DAYS = 60


@dataclass(frozen=True)
class HealthSamples:
    frame: pd.DataFrame
    """The checked table with ``day`` (position of its date) and ``target`` columns."""
    x: np.ndarray
    """Scaled features, one row per frame row."""
    mean: np.ndarray
    std: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    """Row indices of each part (rows with a target only)."""
    days: int


def prepare(frame: pd.DataFrame) -> HealthSamples:
    """Samples of a checked asset-feature table."""
    frame = frame.copy()
    dates = np.sort(frame["date"].unique())
    frame["day"] = np.searchsorted(dates, frame["date"].to_numpy())
    ahead = frame.loc[:, ["symbol", "day", "rel_strength_21d", "vol_21d"]].copy()
    ahead["day"] -= FORWARD_DAYS
    ahead["target"] = ahead["rel_strength_21d"] / ahead["vol_21d"].clip(lower=1e-6)
    frame = frame.merge(ahead.loc[:, ["symbol", "day", "target"]], on=["symbol", "day"], how="left")
    train_d, val_d, test_d = split_days(len(dates) - FORWARD_DAYS, gap=FORWARD_DAYS)
    if train_d.stop - train_d.start < MIN_TRAIN_DAYS or test_d.stop - test_d.start < 10:
        need = int((MIN_TRAIN_DAYS + 2 * FORWARD_DAYS) / 0.6) + FORWARD_DAYS + 1
        raise NotEnoughData(f"{len(dates)} days of asset features are too few; give at least {need} days (--max-days)")
    has_target = np.isfinite(frame["target"].to_numpy())
    day = frame["day"].to_numpy()

    def part(days: slice) -> np.ndarray:
        return np.flatnonzero(has_target & (day >= days.start) & (day < days.stop))

    train, val, test = part(train_d), part(val_d), part(test_d)
    raw = frame.loc[:, list(ASSET_FEATURES)].to_numpy(dtype=np.float64)
    mean, std = raw[train].mean(axis=0), raw[train].std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return HealthSamples(frame, (raw - mean) / std, mean, std, train, val, test, len(dates))


def day_ranks(frame: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Each row's cross-sectional rank of its target among its day's rows, -0.5..0.5."""
    part = frame.iloc[rows]
    rank = part.groupby("day")["target"].rank(pct=True).to_numpy()
    return rank - 0.5


def daily_correlations(part: pd.DataFrame, score: np.ndarray) -> np.ndarray:
    """Spearman between ``score`` and the target across each test day's assets, day by day."""
    days = part["day"].to_numpy()
    target = part["target"].to_numpy()
    return np.array([stats.spearman(score[days == d], target[days == d]) for d in np.unique(days)])


def evaluation(samples: HealthSamples, scores: np.ndarray, recon_mse: float, alpha: float) -> Evaluation:
    """The score's test correlation beside the rule's, with two tests per comparison."""
    part = samples.frame.iloc[samples.test].reset_index(drop=True)
    ours = daily_correlations(part, np.asarray(scores, dtype=np.float64))
    theirs = daily_correlations(part, relative_strength_rank(part))
    keep = np.isfinite(ours) & np.isfinite(theirs)
    ours, theirs = ours[keep], theirs[keep]
    comparisons = []
    for name, other in (("rel_strength_rank", theirs), ("no_skill", np.zeros_like(ours))):
        diff = ours - other

        def mean_of(idx: np.ndarray, d: np.ndarray = diff) -> float:
            return float(d[idx].mean())

        boot = stats.block_bootstrap(mean_of, len(diff), block=BLOCK_DAYS, resamples=RESAMPLES)
        t_p = stats.batch_means_t_p(diff, block=BLOCK_DAYS)
        flip = stats.block_sign_flip_p(diff, block=BLOCK_DAYS, resamples=RESAMPLES)
        comparisons.append(
            Comparison(
                name,
                "test_health_correlation",
                float(ours.mean()),
                float(other.mean()),
                max(t_p, flip),
                f"the larger of: t on {len(diff) // BLOCK_DAYS} block means (p={t_p:.3g}) and block sign-flip "
                f"(p={flip:.3g}) of the daily differences, blocks of {BLOCK_DAYS} days; interval: block bootstrap",
                boot.interval,
            )
        )
    dates = part["date"]
    return Evaluation(
        family=FAMILY,
        unit=FAMILY,
        part=JudgedPart("test", int(keep.sum()), f"{dates.min():%Y-%m-%d}", f"{dates.max():%Y-%m-%d}"),
        metrics={
            "test_recon_mse": float(recon_mse),
            "test_health_correlation": float(ours.mean()),
            "test_rows": float(len(part)),
        },
        baselines={
            "rel_strength_rank": {"test_health_correlation": float(theirs.mean())},
            "no_skill": {"test_health_correlation": 0.0},
        },
        comparisons=tuple(comparisons),
    )


MIN_TEST_DAYS = 5 * BLOCK_DAYS
"""Five blocks: the fewest with which the sign-flip test can reach p < 0.05 at all (one of the
2**5 sign patterns is the observed one: 0.031; four blocks cannot go below 0.0625)."""


def health_rules(min_days: int, alpha: float) -> tuple[GateRule, ...]:
    """Enough test days; a correlation above the rule's and above zero, both significant at ``alpha``."""
    blocks = -(-min_days // BLOCK_DAYS)
    history = 5 * blocks * BLOCK_DAYS + FORWARD_DAYS  # the test part is the newest fifth of the labelled days
    return (
        MinSamples(
            min_days,
            f"the health test judges {BLOCK_DAYS}-day blocks and needs {blocks} of them; "
            f"give about {history} days of history (--max-days)",
        ),
        BeatsBaseline("rel_strength_rank", "test_health_correlation", alpha),
        BeatsBaseline("no_skill", "test_health_correlation", alpha),
    )
