"""The investment system's daily tables, rule and outputs: what the seed's contract promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.errors import BadTrainingConfig, FeatureFileProblem, NonFiniteValues, NotEnoughData
from training.families import get_family
from training.families.health.score import RuleHealthPredictor, ScoreScale, behaviour
from training.families.investment import CONTEXT_COLUMNS, FEATURE_COLUMNS, REGIMES
from training.families.investment.data import (
    check_table,
    partition_day,
    partition_key,
    read_partitions,
    read_table,
    write_table,
)
from training.families.investment.synthetic import daily_market
from training.families.regime.rule import RegimeRule, RuleRegimePredictor, macro_f1


@pytest.fixture(scope="module")
def market():
    return daily_market(260, 4, seed=3)


def test_every_feature_of_a_day_uses_only_data_known_at_its_close(market) -> None:
    day = market.closes.index[200]
    cut = market.closes.index <= day
    from training.families.investment.synthetic import DailyMarket

    truncated = DailyMarket(
        market.closes.loc[cut], market.yields.loc[cut], market.tone.loc[cut], market.regimes[cut], market.assets
    )
    for full, part in ((market.context(), truncated.context()), (market.features(), truncated.features())):
        want = full.loc[full["date"] == day].reset_index(drop=True)
        got = part.loc[part["date"] == day].reset_index(drop=True)
        assert len(want) and got.equals(want)


def test_tables_carry_the_seed_columns(market) -> None:
    assert tuple(market.context().columns) == CONTEXT_COLUMNS
    assert tuple(market.features().columns) == FEATURE_COLUMNS


def test_a_missing_column_is_named(market) -> None:
    with pytest.raises(FeatureFileProblem, match="lacks column.*yield_slope.*gdelt_avg_tone"):
        check_table(market.context().drop(columns=["yield_slope", "gdelt_avg_tone"]), "context", where="x")


def test_nan_days_are_reported_not_filled_across(market) -> None:
    frame = market.context()
    frame.loc[30, "credit_spread_proxy"] = np.nan
    day = f"{frame.loc[30, 'date']:%Y-%m-%d}"
    with pytest.raises(NonFiniteValues, match=f"1 day\\(s\\) \\({day}\\)"):
        check_table(frame, "context", where="x")


def test_a_gap_in_the_days_is_reported(market) -> None:
    frame = market.context().drop(index=range(40, 50))
    with pytest.raises(NotEnoughData, match="1 gap"):
        check_table(frame, "context", where="x")


def test_too_few_days_for_the_regime_split_is_bad_input(tmp_path: Path, market) -> None:
    from training.families.regime.judge import prepare

    with pytest.raises(NotEnoughData, match="give at least"):
        prepare(check_table(market.context().iloc[:80], "context", where="x"), 5, 10)


def test_partitions_round_trip_and_only_the_newest_days_are_read(tmp_path: Path, market) -> None:
    frame = market.context().iloc[-40:]
    for day, row in frame.groupby("date"):
        write_table(row, tmp_path / partition_key("context", day))
    assert partition_day(partition_key("context", "2019-05-02")) == "2019-05-02"
    assert partition_day("context/date=2019-05-02/other.parquet") is None
    got = read_partitions(tmp_path, "context", 30)
    assert len(got) == 30 and got["date"].iloc[-1] == frame["date"].iloc[-1]


def test_a_file_that_is_not_parquet_is_refused_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "context.parquet"
    bad.write_text("date,spy\n")
    with pytest.raises(FeatureFileProblem, match="not a readable parquet"):
        read_table(bad, "context")


def test_the_rule_labels_the_next_days_and_persistence_the_last_ones() -> None:
    rule = RegimeRule(horizon=3, trend=0.01, calm_vol=0.12, panic_vol=0.5)
    returns = np.array([0.01, 0.01, 0.01, -0.02, 0.0, 0.0, 0.0])
    trailing = rule.trailing(returns)
    assert list(trailing[:2]) == [-1, -1]
    assert REGIMES[trailing[2]] == "calm_uptrend"
    assert REGIMES[trailing[6]] == "choppy"
    assert list(rule.forward(returns)[:4]) == list(trailing[3:])


def test_fast_macro_f1_agrees_with_scikit_learn() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    truth, guess = rng.integers(0, 5, 300), rng.integers(0, 4, 300)
    want = f1_score(truth, guess, labels=list(range(5)), average="macro", zero_division=0)
    assert macro_f1(truth, guess) == pytest.approx(want)


def test_the_fallbacks_answer_in_the_seed_format(market) -> None:
    regime = RuleRegimePredictor().predict(market.context())
    assert set(regime) == {"regime_label", "regime_probs", "regime_embedding"}
    assert set(regime["regime_probs"]) == set(REGIMES) and len(regime["regime_embedding"]) == 8
    assert sum(regime["regime_probs"].values()) == pytest.approx(1.0)
    health = RuleHealthPredictor().predict(market.features())
    assert set(health) == set(market.assets)
    one = next(iter(health.values()))
    assert set(one) == {"health_score", "vol_bucket", "behavior", "latent"}
    assert 0.0 <= one["health_score"] <= 1.0 and len(one["latent"]) == 16
    assert one["vol_bucket"] in ("low", "med", "high")


def test_behaviour_and_score_scale_follow_their_definitions() -> None:
    kinds = behaviour(np.array([0.01, -0.01, 0.01]), np.array([0.02, 0.02, -0.02]), np.array([0.03, 0.03, 0.03]))
    assert kinds == ["momentum", "mean_reversion", "mixed"]
    scale = ScoreScale.fit(np.arange(101.0))
    assert scale(np.array([-5.0, 50.0, 500.0])).tolist() == pytest.approx([0.0, 0.5, 1.0])


@pytest.mark.parametrize(
    ("family", "params", "message"),
    [
        ("regime", {"regime-type": "lstm"}, "unknown regime parameter"),
        ("regime", {"model_type": "lstm"}, "unknown regime model-type 'lstm'"),
        ("health", {"model_type": "pca"}, "unknown health model-type 'pca'"),
        ("health", {"epochs": 0}, "must be positive"),
    ],
)
def test_bad_params_are_bad_input(family: str, params: dict, message: str) -> None:
    with pytest.raises(BadTrainingConfig, match=message):
        get_family(family).check_params(params)


def test_a_regime_job_without_its_context_is_bad_input(tmp_path: Path) -> None:
    from training.errors import TrainingInputError
    from training.families.base import FitJob

    with pytest.raises(TrainingInputError, match="no 'context' input"):
        get_family("regime").fit(FitJob("regime", "regime", {}, tmp_path), lambda p: None)


def test_features_table_is_sorted_by_day_and_symbol(market) -> None:
    shuffled = market.features().sample(frac=1.0, random_state=0)
    checked = check_table(shuffled, "features", where="x")
    assert checked["date"].is_monotonic_increasing
    first_day = checked.loc[checked["date"] == checked["date"].iloc[0], "symbol"]
    assert list(first_day) == sorted(first_day)
    assert isinstance(checked, pd.DataFrame)
