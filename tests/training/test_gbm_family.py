"""The gbm family's own promises beyond the shared conformance test: the encoder sees only
training rows and is shared across coins of different feature sets, a head pins its encoder,
a finished head resumes, and costs come from the order book and decide the verdict."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from training.dataset import load_symbol_dataset
from training.families import get_family
from training.families.evaluation import judge
from training.families.gbm.costs import ThinBook, costs_from_book
from training.errors import CheckpointMismatch
from training.families.gbm.encoder import (
    EncoderMismatch,
    SharedEncoder,
    common_names,
    encoder_from_moments,
    fit_encoder,
)
from training.families.gbm.moments import CoinMoments, coin_moments
from training.families.gbm.params import GbmParams
from training.families.gbm.synthetic import COINS, factor_frame, synthetic_book, write_coins
from training.families.lstm.synthetic import write_synthetic_feature_file
from training.features.io import read_feature_meta

SPLIT = GbmParams.from_mapping({"split": {"longest_feature_window": 10}}).split


def _datasets(paths: dict[str, Path]) -> list:
    return [load_symbol_dataset(p, SPLIT) for p in paths.values()]


def test_encoder_sees_only_training_rows(tmp_path: Path) -> None:
    paths = write_coins(tmp_path / "a", COINS, 1500, seed=3, signal=1.0)
    names = common_names(read_feature_meta(p).feature_names for p in paths.values())
    before = fit_encoder(iter(_datasets(paths)), names, 3)
    # Rewrite every coin's validation and test rows: the encoder must not move.
    changed = {}
    for coin, path in paths.items():
        ds = load_symbol_dataset(path, SPLIT)
        frame = factor_frame(1500, len(ds.feature_names), seed=99, signal=0.0)
        original = factor_frame(1500, len(ds.feature_names), seed=3 * 101 + COINS.index(coin), signal=1.0)
        cut = int(ds.train_ends[-1]) + 1
        frame.iloc[:cut] = original.iloc[:cut]
        changed[coin] = write_synthetic_feature_file(tmp_path / "b", coin, 1500, len(ds.feature_names), frame=frame)
    after = fit_encoder(iter(_datasets(changed)), names, 3)
    assert after.hash == before.hash


def test_streamed_encoder_is_the_pca_of_the_stacked_training_rows(tmp_path: Path) -> None:
    paths = write_coins(tmp_path, COINS, 1200, seed=5, signal=0.0)
    names = common_names(read_feature_meta(p).feature_names for p in paths.values())
    datasets = _datasets(paths)
    encoder = fit_encoder(iter(datasets), names, 3)
    stacked = np.vstack([ds.features[ds.train_ends][:, encoder.columns_of(ds)] for ds in datasets]).astype(float)
    _, _, vt = np.linalg.svd(stacked - stacked.mean(axis=0), full_matrices=False)
    # Same subspace, component by component (up to sign).
    assert np.allclose(np.abs(np.sum(vt[:3] * encoder.components, axis=1)), 1.0, atol=1e-6)
    assert encoder.rows == sum(len(ds.train_ends) for ds in datasets)


def test_coins_with_different_feature_sets_share_the_names_they_all_have(tmp_path: Path) -> None:
    paths = write_coins(tmp_path, COINS, 1200, seed=1, signal=0.0)  # the first coin has f6 as well
    names = common_names(read_feature_meta(p).feature_names for p in paths.values())
    assert names == tuple(f"f{i}" for i in range(6))
    encoder = fit_encoder(iter(_datasets(paths)), names, 3)
    fewer = write_synthetic_feature_file(
        tmp_path / "fewer", "XRP-USD", 1200, 4, frame=factor_frame(1200, 4, seed=2, signal=0)
    )
    with pytest.raises(EncoderMismatch, match="XRP-USD lacks 2 of the shared encoder's features"):
        encoder.transform(load_symbol_dataset(fewer, SPLIT))


def test_moments_saved_per_coin_give_the_same_encoder_as_the_feature_files(tmp_path: Path) -> None:
    paths = write_coins(tmp_path, COINS, 1200, seed=4, signal=1.0)  # two feature sets (f6 on the first)
    names = common_names(read_feature_meta(p).feature_names for p in paths.values())
    for ds in _datasets(paths):  # as each Batch child does for its own coins
        coin_moments(ds).save(tmp_path / "moments" / f"{ds.symbol}.npz")
    loaded = [CoinMoments.load(tmp_path / "moments" / f"{coin}.npz") for coin in paths]
    assert encoder_from_moments(loaded, names, 3).hash == fit_encoder(iter(_datasets(paths)), names, 3).hash
    with pytest.raises(EncoderMismatch, match="lacks 1 of the shared encoder's features"):
        encoder_from_moments(loaded[1:], (*names, "f6"), 3)


def test_moments_that_are_not_square_or_not_finite_are_refused(tmp_path: Path) -> None:
    paths = write_coins(tmp_path, COINS[:1], 600, seed=4, signal=0.0)
    good = coin_moments(_datasets(paths)[0])
    for name, bad in {"square": replace(good, products=good.products[:-1]),
                      "finite": replace(good, total=np.where(np.arange(len(good.total)) == 0, np.nan, good.total)),
                      "named twice": replace(good, feature_names=(good.feature_names[0],) * len(good.feature_names))}.items():  # fmt: skip
        bad.save(tmp_path / f"{name}.npz")
        with pytest.raises(CheckpointMismatch, match="malformed encoder moments"):
            CoinMoments.load(tmp_path / f"{name}.npz")
    (tmp_path / "pickled.npz").write_bytes(b"\x80\x04not an npz")
    with pytest.raises(CheckpointMismatch):
        CoinMoments.load(tmp_path / "pickled.npz")


def test_a_head_trained_against_another_encoder_is_refused(tmp_path: Path) -> None:
    family = get_family("gbm")
    job = family.synthetic_job(tmp_path / "job", skill=True, seed=0)
    fitted = family.fit(job, lambda p: None)
    folder = tmp_path / "saved"
    folder.mkdir()
    family.save(fitted, folder)
    other = replace(fitted.encoder, components=fitted.encoder.components[::-1].copy())
    other.save(folder)  # a whole, self-consistent encoder: only the head's pin can tell
    with pytest.raises(EncoderMismatch, match="was trained against encoder"):
        family.load(folder)


def test_a_finished_head_resumes_and_a_new_encoder_refits_it(tmp_path: Path) -> None:
    family = get_family("gbm")
    job = family.synthetic_job(tmp_path / "job", skill=True, seed=0)
    first = family.fit(job, lambda p: None)
    again = family.fit(job, lambda p: None)
    assert not first.head.resumed and again.head.resumed
    ends = first.dataset.test_ends
    assert np.array_equal(first.probabilities(ends), again.probabilities(ends))
    other = replace(first.encoder, components=first.encoder.components[::-1].copy())
    other.save(job.inputs["encoder"])
    assert not family.fit(job, lambda p: None).head.resumed


def test_costs_come_from_the_book_and_a_thin_book_is_refused() -> None:
    book = synthetic_book(mid=100.0, half_spread=0.01, depth=1.0)
    small = costs_from_book("BTC-USD", book, fee_bps=5.0, notional=50.0)
    assert small.spread_bps == pytest.approx(2.0, rel=1e-6)
    assert small.slippage_bps == pytest.approx(0.0, abs=1e-9)  # fills inside the best level
    deep = costs_from_book("BTC-USD", book, fee_bps=5.0, notional=500.0)  # walks five levels
    # five levels 0.002 apart: the average fill lands about 0.004 beyond the best price, 0.4 bps of 100
    assert deep.slippage_bps == pytest.approx(0.4, rel=0.01) and deep.fee_bps == 5.0
    with pytest.raises(ThinBook, match="less than the 5,000"):
        costs_from_book("BTC-USD", book, fee_bps=5.0, notional=5000.0)


def test_a_skilled_head_fails_when_its_costs_eat_the_edge(tmp_path: Path) -> None:
    family = get_family("gbm")
    job = family.synthetic_job(tmp_path / "job", skill=True, seed=0)
    dear = replace(job, costs={"default": {"fee_bps": 60.0, "spread_bps": 20.0, "slippage_bps": 20.0}})
    params = family.check_params(job.params)
    verdict = judge(family.evaluate(family.fit(dear, lambda p: None), dear), family.rules(params))
    assert not verdict.passed
    assert any(line.startswith("earns after costs") for line in verdict.reasons)


def test_unknown_settings_are_bad_input() -> None:
    from training.errors import BadTrainingConfig

    with pytest.raises(BadTrainingConfig, match="unknown head setting"):
        GbmParams.from_mapping({"head": {"leaves": 3}})
    with pytest.raises(BadTrainingConfig, match="split.window must be 1"):
        GbmParams.from_mapping({"split": {"window": 5}})
    assert isinstance(SharedEncoder, type)


def test_an_xgboost_head_learns_what_there_is_saves_as_json_and_fails_on_noise(tmp_path: Path) -> None:
    family = get_family("gbm")
    for skill in (True, False):
        job = family.synthetic_job(tmp_path / str(skill), skill=skill, seed=1)
        job = replace(job, params={**job.params, "head": {**job.params["head"], "engine": "xgboost"}})
        params = family.check_params(job.params)
        fitted = family.fit(job, lambda p: None)
        verdict = judge(family.evaluate(fitted, job), family.rules(params))
        assert verdict.passed is skill, verdict.lines()
        if skill:
            folder = tmp_path / "saved"
            folder.mkdir()
            family.save(fitted, folder)
            assert (folder / "model.bin").read_text().startswith("{")  # XGBoost's JSON, no pickle
            ends = fitted.dataset.test_ends
            raw = fitted.dataset.features[ends] * np.asarray(fitted.dataset.scaler.std) + np.asarray(
                fitted.dataset.scaler.mean
            )
            assert np.allclose(family.load(folder).predict(raw), fitted.probabilities(ends), atol=1e-5)
