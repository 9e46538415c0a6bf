"""The trading environment: gymnasium's and stable-baselines3's checks, fills at the next
open, rewards after costs, observations that never look ahead, and bad input refused."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import training.rl  # noqa: F401 - registers RetrainConsole/Trading-v0
from training.errors import BadTrainingConfig, FeatureFileProblem, NotEnoughData
from training.families.dql.synthetic import market_frame, write_market_file
from training.families.lstm.synthetic import write_synthetic_feature_file
from training.metrics import TradingCosts
from training.rl.env import TradingEnv
from training.rl.market import load_market

COSTS = TradingCosts(fee_bps=5.0, spread_bps=2.0, slippage_bps=1.0)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_market_file(tmp_path_factory.mktemp("features"), "BTC-USD", 1200, 3, seed=3)


def test_make_by_id_gives_an_environment_over_a_feature_file(data_file: Path) -> None:
    env = gym.make("RetrainConsole/Trading-v0", data_file=str(data_file), window=4)
    obs, info = env.reset(seed=1)
    assert obs.shape == (4 * 3 + 2,) and obs.dtype == np.float32
    assert env.action_space.n == 3
    env.close()


def test_passes_gymnasium_and_stable_baselines_env_checkers(data_file: Path) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(TradingEnv(data_file, window=4, episode_length=50))
    sb3_check_env(TradingEnv(data_file, window=4, episode_length=50), warn=True)


def test_an_action_at_t_fills_at_the_next_open_and_is_paid_after_costs(data_file: Path) -> None:
    env = TradingEnv(data_file, window=4, costs=COSTS, episode_length=20)
    market = env.market
    start = int(market.rows("train")[10])
    env.reset(options={"start": start})
    _, reward, _, _, info = env.step(2)  # long
    side = COSTS.round_trip / 2
    assert info["fill_row"] == start + 1
    assert info["fill_price"] == market.open[start + 1]
    assert info["fill_price"] != market.close[start]  # the price it saw is not the price it got
    expected = math.log(market.open[start + 2] / market.open[start + 1]) + math.log(1 - side)
    assert reward == pytest.approx(expected)
    obs, reward, _, _, info = env.step(0)  # reverse to short: two sides paid
    assert info["fill_price"] == market.open[start + 2]
    expected = -math.log(market.open[start + 3] / market.open[start + 2]) + math.log(1 - 2 * side)
    assert reward == pytest.approx(expected)
    # The unrealised return of the short, marked at the close of the bar it now sees.
    assert obs[-2] == -1.0
    assert obs[-1] == pytest.approx(-(market.close[start + 2] / market.open[start + 2] - 1), rel=1e-5)


def test_a_truncated_input_gives_the_same_observation_at_t(tmp_path: Path, data_file: Path) -> None:
    full = TradingEnv(data_file, window=4)
    frame = market_frame(1200, 3, seed=3)
    t = int(full.market.rows("train")[-1])
    short = write_synthetic_feature_file(
        tmp_path, "BTC-USD", t + 1, 3, frame=frame.iloc[: t + 1].reset_index(drop=True)
    )
    cut = TradingEnv(short, window=4, scaler=full.market.scaler)
    for row in (t - 5, t):
        assert np.array_equal(full.observation_at(row, 1.0, 100.0), cut.observation_at(row, 1.0, 100.0))


def test_episodes_stay_inside_the_training_part(data_file: Path) -> None:
    env = TradingEnv(data_file, window=4, episode_length=64)
    train = env.market.rows("train")
    val_first = int(env.market.rows("val")[0])
    for seed in range(20):
        _, info = env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            done = terminated or truncated
            assert train[0] <= info["row"] <= train[-1]
            assert info["fill_row"] + 1 < val_first  # the bar it is paid on is before the purge ends


def test_a_file_missing_price_columns_is_refused_in_one_line(tmp_path: Path) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.families.lstm.synthetic import synthetic_hash

    frame = market_frame(600, 3).drop(columns=["open"])
    meta = {
        "symbol": "BTC-USD",
        "spec_version": "synthetic-1",
        "feature_hash": synthetic_hash(3),
        "feature_names": ["f0", "f1", "f2"],
        "rows": 600,
    }
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"retrain_console": json.dumps(meta)})
    path = tmp_path / "BTC-USD.parquet"
    pq.write_table(table, path)
    with pytest.raises((FeatureFileProblem, NotEnoughData)) as err:
        load_market(path)
    assert "open" in str(err.value) and "\n" not in str(err.value)


def test_too_few_rows_for_one_episode_is_refused(tmp_path: Path) -> None:
    path = write_market_file(tmp_path, "BTC-USD", 400, 3)
    with pytest.raises(NotEnoughData, match="episode"):
        load_market(path, window=4, min_rows_per_part=256)


def test_bad_positions_are_refused(data_file: Path) -> None:
    with pytest.raises(BadTrainingConfig, match="positions"):
        TradingEnv(data_file, positions=(1.0,))
