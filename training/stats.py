"""Significance figures every family's evaluation and the gate use: plain NumPy, seeded.

Out-of-sample samples of a trading model are not independent (labels overlap, volatility
clusters), so the tests here resample or flip signs in contiguous *blocks*: a block as
long as the dependence (at least the label horizon) keeps neighbours together.

- `binomial_sf`: P(X >= k) for X ~ Binomial(n, p); exact in log space.
- `mcnemar_one_sided`: two classifiers on the same samples; among the samples where they
  disagree, is the model right more often than chance? (exact, one-sided).
- `block_sign_flip_p`: paired per-sample differences (model minus baseline); is their
  mean above zero? Signs are flipped per block under the null of no difference.
- `batch_means_t_p`: the same question as the sign flip, answered by Student's t on the means
  of whole non-overlapping blocks (batch means). With a dozen blocks its variance estimate is
  unbiased and the t distribution owns up to how few there are, where a bootstrap of so few
  blocks reads too narrow (over 200 of the sandbox's random walks, eleven blocks each, the
  bootstrap's p fell under 0.05 for 6 to 14 % of them, the t test's and the sign flip's for
  4.5 to 7 % with model-like scores; `scripts/bench/health_gate_null.py`).
- `block_bootstrap`: a statistic of the samples with its percentile interval and a
  one-sided p-value for "the statistic is not above zero" (the shift method). The
  statistic is a function of resampled *indices*, so paired figures (a difference of two
  F1 scores, a difference of two correlations) are resampled together.
- `spearman`: rank correlation (ties averaged), with a Fisher-z p-value.

Every p-value is one-sided: "the model is better" is the only claim the gate needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 20261204


def binomial_sf(k: int, n: int, p: float = 0.5) -> float:
    """P(X >= k) for X ~ Binomial(n, p). 1.0 when k <= 0; 0.0 when k > n."""
    if n <= 0 or k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return float(min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms)))


def normal_sf(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def mcnemar_one_sided(model_right: np.ndarray, baseline_right: np.ndarray) -> tuple[float, int, int]:
    """Exact one-sided McNemar test: (p, model-only hits, baseline-only hits).

    Under "no better than the baseline" a sample the two disagree on is equally likely to
    go either way, so model-only hits ~ Binomial(disagreements, 1/2). Pass non-overlapping
    samples (every horizon-th bar) for the exact test to mean what it says.
    """
    a = np.asarray(model_right, dtype=bool)
    b = np.asarray(baseline_right, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length ({a.shape} vs {b.shape})")
    only_model = int((a & ~b).sum())
    only_base = int((~a & b).sum())
    return binomial_sf(only_model, only_model + only_base), only_model, only_base


def _blocks(n: int, block: int) -> list[slice]:
    block = max(1, int(block))
    return [slice(i, min(i + block, n)) for i in range(0, n, block)]


def block_sign_flip_p(
    diff: np.ndarray, *, block: int = 1, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> float:
    """One-sided p-value that the mean of paired differences ``diff`` is above zero.

    Each block's differences keep their magnitudes and get one random sign per resample;
    the p-value is the share of resamples whose mean is at least the observed one (with the
    observed arrangement counted, so it is never 0). NaNs are dropped; no data gives 1.0.
    """
    d = np.asarray(diff, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return 1.0
    sums = np.array([d[s].sum() for s in _blocks(len(d), block)])
    observed = sums.sum()
    if not np.any(sums):
        return 1.0
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(resamples, len(sums)))
    flipped = signs @ sums
    return float((1 + np.count_nonzero(flipped >= observed - 1e-12)) / (resamples + 1))


def batch_means_t_p(diff: np.ndarray, *, block: int) -> float:
    """One-sided p-value that the mean of ``diff`` is above zero, from Student's t on the means of
    whole blocks of ``block`` samples, counted back from the newest sample (the oldest remainder,
    shorter than a block, is left out). NaNs are dropped; fewer than two blocks, or blocks that
    all agree exactly, give 1.0 unless every block is above zero and equal (then 0.0)."""
    from scipy.stats import t as student

    block = max(1, int(block))
    d = np.asarray(diff, dtype=np.float64)
    d = d[np.isfinite(d)]
    count = len(d) // block
    if count < 2:
        return 1.0
    means = d[len(d) - count * block :].reshape(count, block).mean(axis=1)
    spread = means.std(ddof=1)
    if spread == 0.0:
        return 0.0 if means[0] > 0 else 1.0
    return float(student.sf(means.mean() / (spread / math.sqrt(count)), count - 1))


@dataclass(frozen=True)
class BootstrapResult:
    """A statistic, its percentile interval, and the one-sided p-value for "not above zero"."""

    estimate: float
    low: float
    high: float
    p_value: float
    level: float
    block: int
    resamples: int

    @property
    def interval(self) -> tuple[float, float]:
        return (self.low, self.high)


def circular_block_indices(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices made of whole blocks of ``block`` consecutive samples, wrapping at the end."""
    block = max(1, min(int(block), n))
    starts = rng.integers(0, n, size=math.ceil(n / block))
    return ((starts[:, None] + np.arange(block)[None, :]) % n).reshape(-1)[:n]


def block_bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    block: int = 1,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    seed: int = DEFAULT_SEED,
) -> BootstrapResult:
    """Circular block bootstrap of ``statistic(indices)`` over ``n`` samples.

    ``statistic`` receives an index array (``np.arange(n)`` for the observed value) and
    returns a float; resampling indices keeps paired series paired. The p-value tests
    "the statistic is not above zero" by the shift method: the share of resampled
    deviations from the estimate that reach the estimate itself.
    """
    if n <= 0:
        return BootstrapResult(float("nan"), float("nan"), float("nan"), 1.0, level, block, 0)
    estimate = float(statistic(np.arange(n)))
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(circular_block_indices(n, block, rng)) for _ in range(resamples)], dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if not np.isfinite(estimate) or len(draws) == 0:
        return BootstrapResult(estimate, float("nan"), float("nan"), 1.0, level, block, len(draws))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    p = (1 + np.count_nonzero(draws - estimate >= estimate)) / (len(draws) + 1) if estimate > 0 else 1.0
    return BootstrapResult(estimate, float(low), float(high), float(min(1.0, p)), level, block, len(draws))


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    out = np.empty(len(x), dtype=np.float64)
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    out[order] = np.repeat(first + (counts - 1) / 2.0 + 1.0, counts)
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of finite pairs; NaN with fewer than 3 or a constant side."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return float("nan")
    rx, ry = ranks(x[keep]), ranks(y[keep])
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def spearman_p(rho: float, n: int) -> float:
    """One-sided p-value for "the correlation is not above zero" (Fisher z, n >= 4)."""
    if not np.isfinite(rho) or n < 4:
        return 1.0
    rho = max(-0.999999, min(0.999999, rho))
    z = math.atanh(rho) * math.sqrt((n - 3) / 1.06)
    return normal_sf(z)
