"""The significance tools every family and the gate rely on: calibrated under the null,
powerful when there is an effect, and deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pytest

from training import stats


def test_binomial_tail_matches_direct_sum() -> None:
    from math import comb

    n, k = 40, 27
    direct = sum(comb(n, i) for i in range(k, n + 1)) / 2**n
    assert stats.binomial_sf(k, n) == pytest.approx(direct, rel=1e-9)
    assert stats.binomial_sf(0, 10) == 1.0
    assert stats.binomial_sf(11, 10) == 0.0


def test_mcnemar_counts_only_the_samples_the_two_disagree_on() -> None:
    model = np.array([1, 1, 1, 1, 0, 0, 1, 1], dtype=bool)
    base = np.array([1, 0, 0, 0, 0, 1, 1, 0], dtype=bool)
    p, only_model, only_base = stats.mcnemar_one_sided(model, base)
    assert (only_model, only_base) == (4, 1)
    assert p == pytest.approx(stats.binomial_sf(4, 5))


def test_sign_flip_rejects_at_about_alpha_under_the_null() -> None:
    rng = np.random.default_rng(1)
    rejections = sum(stats.block_sign_flip_p(rng.normal(size=300), block=5, resamples=400, seed=i) <= 0.05
                     for i in range(300))
    assert rejections / 300 <= 0.09


def test_sign_flip_finds_a_real_edge() -> None:
    rng = np.random.default_rng(2)
    assert stats.block_sign_flip_p(rng.normal(0.3, 1.0, size=400), block=5) < 0.01


def test_block_bootstrap_interval_covers_the_mean_and_p_tracks_the_sign() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(0.2, 1.0, size=500)
    result = stats.block_bootstrap(lambda idx: float(x[idx].mean()), len(x), block=10, resamples=500)
    assert result.low < result.estimate < result.high
    assert result.p_value < 0.05
    negative = stats.block_bootstrap(lambda idx: float(-x[idx].mean()), len(x), block=10, resamples=500)
    assert negative.p_value == 1.0


def test_block_bootstrap_is_deterministic_for_a_seed() -> None:
    x = np.random.default_rng(4).normal(size=200)
    a = stats.block_bootstrap(lambda idx: float(x[idx].sum()), len(x), block=7, resamples=200, seed=9)
    b = stats.block_bootstrap(lambda idx: float(x[idx].sum()), len(x), block=7, resamples=200, seed=9)
    assert a == b


def test_spearman_is_rank_based_and_its_p_value_one_sided() -> None:
    x = np.arange(50, dtype=float)
    assert stats.spearman(x, x**3) == pytest.approx(1.0)
    assert stats.spearman(x, -x) == pytest.approx(-1.0)
    assert stats.spearman_p(0.5, 50) < 0.001
    assert stats.spearman_p(-0.5, 50) > 0.99
    assert np.isnan(stats.spearman(x, np.ones_like(x)))


def test_block_means_t_holds_its_level_with_a_dozen_blocks_where_the_bootstrap_reads_too_narrow() -> None:
    rng = np.random.default_rng(5)
    draws = [rng.normal(size=12 * 63) for _ in range(400)]
    t_rate = np.mean([stats.batch_means_t_p(d, block=63) < 0.05 for d in draws])
    boot_rate = np.mean([
        stats.block_bootstrap(lambda i, d=d: float(d[i].mean()), len(d), block=63, resamples=300, seed=k).p_value < 0.05
        for k, d in enumerate(draws)
    ])
    assert 0.02 <= t_rate <= 0.075
    assert boot_rate > t_rate


def test_block_means_t_finds_a_real_edge_and_needs_two_whole_blocks() -> None:
    rng = np.random.default_rng(6)
    assert stats.batch_means_t_p(rng.normal(0.3, 1.0, size=12 * 63), block=63) < 0.01
    assert stats.batch_means_t_p(rng.normal(5.0, 1.0, size=100), block=63) == 1.0  # one whole block
    assert stats.batch_means_t_p(np.full(4 * 63, 0.1), block=63) == 0.0
