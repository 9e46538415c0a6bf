"""The dql family's agents: stable-baselines3's DQN and our own, checkpoints and resume,
the judge's baselines, and bad parameters refused in one line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from training.errors import BadTrainingConfig
from training.families import get_family
from training.families.base import FitJob
from training.families.dql.params import DqlParams
from training.rl.judge import evaluate_positions
from training.rl.market import load_market


def _small(job: FitJob, **changes: object) -> FitJob:
    return replace(job, params={**job.params, "episode_length": 100, **changes})


def test_sb3_dqn_agent_trains_saves_and_loads_as_plain_weights(tmp_path: Path) -> None:
    family = get_family("dql")
    job = _small(family.synthetic_job(tmp_path / "job", skill=True), agent_type="dqn", episodes=2)
    episodes: list[int] = []
    fitted = family.fit(job, lambda p: episodes.append(p.step) if p.kind == "episode" else None)
    assert episodes == [1, 2]
    family.evaluate(fitted, job)
    folder = tmp_path / "saved"
    folder.mkdir()
    family.save(fitted, folder)
    assert not any(p.suffix == ".zip" for p in folder.iterdir()), "SB3's pickled zip must not be saved"
    predictor = family.predictor(folder)
    obs = np.random.default_rng(0).standard_normal((32, predictor.config["network"]["n_obs"])).astype(np.float32)
    import torch

    with torch.no_grad():
        expected = np.asarray(fitted.params.positions)[fitted.net(torch.as_tensor(obs)).argmax(dim=1).numpy()]
    assert np.array_equal(predictor.predict(obs), expected)


def test_custom_agent_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    family = get_family("dql")
    job = _small(family.synthetic_job(tmp_path / "job", skill=True), episodes=2)
    family.fit(job, lambda p: None)
    assert (job.work_dir / "last.pt").is_file() and (job.work_dir / "last.json").is_file()
    seen: list[tuple[str, int]] = []
    again = family.fit(_small(job, episodes=4), lambda p: seen.append((p.kind, p.step)))
    assert again.resumed_from == 2
    assert [step for kind, step in seen if kind == "episode"] == [3, 4]
    assert len(again.log) == 4


def test_a_random_walk_never_beats_buy_and_hold_by_copying_it(tmp_path: Path) -> None:
    family = get_family("dql")
    job = family.synthetic_job(tmp_path / "job", skill=False)
    market = load_market(job.inputs["features"], window=2)
    rows = market.rows("test")
    evaluation, _ = evaluate_positions("BTC-USD", market, "test", np.ones(len(rows)), 0.0007)
    same = evaluation.comparison("buy_and_hold", "net_return")
    assert same is not None and same.difference == pytest.approx(0.0) and same.p_value == 1.0
    assert evaluation.metrics["turnover"] == pytest.approx(1 / len(rows))
    for key in ("total_return", "sharpe", "max_drawdown", "turnover", "hit_rate"):
        assert key in evaluation.metrics


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"agent_type": "ppo"}, "unknown agent type 'ppo'"),
        ({"episodes": 0}, "episodes (0)"),
        ({"episodes": -3}, "episodes (-3)"),
        ({"agent": {"warp": 9}}, "unknown agent setting"),
        ({"env": {"positions": [1]}}, "positions"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(params: dict, message: str) -> None:
    with pytest.raises(BadTrainingConfig) as err:
        DqlParams.from_mapping(params)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_trainers_config_layout_is_read_as_the_familys_sections() -> None:
    params = DqlParams.from_mapping(
        {"train": {"agent_type": "dqn", "episodes": 3, "window": 8, "n_step": 2}, "features": {}, "fresh": True}
    )
    assert (params.agent_type, params.episodes, params.window, params.agent.n_step, params.fresh) == (
        "dqn",
        3,
        8,
        2,
        True,
    )
