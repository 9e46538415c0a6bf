"""The ``dql`` family: a deep-Q trading agent on the gymnasium environment (`training.rl`).

One agent per symbol, trained on episodes of the training part of its feature file
(`training.rl.env.TradingEnv`: fills at the next bar's open, rewards after costs), by
either our own Double + Dueling n-step DQN (``agent_type: custom``, `training.rl.ddqn`)
or stable-baselines3's DQN (``agent_type: dqn``, `training.rl.sb3_agent`), on CUDA when
present. It checkpoints every few episodes into ``FitJob.work_dir`` and resumes from there.

Judged (`training.rl.judge`) on the test part, greedily, after costs, against buy and
hold, flat and the last-move long/short rule, with block-bootstrap p-values; the rules
ask that it earns and beats each of them significantly.

A saved model folder holds ``weights.npz`` (the Q network, plain arrays), ``config.json``
(format, agent, environment, costs, gates), ``features.json`` (names, hash, scaler),
``metrics.json`` (the judged figures) and ``training_log.json`` (reward per episode).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from training.errors import BadTrainingConfig, MissingFeatureInput
from training.families.artifacts import check_format, load_arrays, load_json, save_arrays, save_json
from training.families.base import FitJob, InputNeed, Predictor, Progress, ProgressSink
from training.families.dql.params import DqlParams
from training.families.evaluation import Evaluation, GateRule
from training.metrics import TradingCosts

CHECKPOINT_NAME = "last.pt"
"""With ``last.json`` beside it (episode, size, sha256): what the SSH backend copies off the
host on each episode line and puts back on a replacement host (as for the lstm's epochs)."""
MODEL_FILES = ("weights.npz", "config.json", "features.json", "metrics.json", "training_log.json")


@dataclass
class FittedDql:
    """A trained agent and what judging and saving it needs."""

    unit: str
    market: Any
    """`training.rl.market.Market`."""
    params: DqlParams
    costs: TradingCosts
    net: Any
    """The greedy Q network (torch, CPU, eval mode)."""
    log: list[dict[str, float]]
    resumed_from: int
    device: str
    seconds: float
    judged: dict[str, Any] = field(default_factory=dict)

    def act(self, obs: np.ndarray) -> int:
        import torch

        with torch.no_grad():
            return int(self.net(torch.as_tensor(obs)).argmax())


class AgentPredictor:
    """A saved agent: observations in, the position it would hold out."""

    name = "dql"
    trained = True

    def __init__(self, net: Any, positions: tuple[float, ...], config: Mapping[str, Any]) -> None:
        self.net, self.positions, self.config = net, positions, dict(config)

    def predict(self, rows: Any) -> np.ndarray:
        import torch

        obs = torch.as_tensor(np.atleast_2d(np.asarray(rows, dtype=np.float32)))
        with torch.no_grad():
            actions = self.net(obs).argmax(dim=1).numpy()
        return np.asarray(self.positions, dtype=np.float64)[actions]

    def act(self, obs: np.ndarray) -> int:
        """The action (index into ``positions``) the agent takes on one observation."""
        import torch

        with torch.no_grad():
            return int(self.net(torch.as_tensor(np.asarray(obs, dtype=np.float32))).argmax())


class FlatPredictor:
    """The fallback without a trained agent: stay out of the market."""

    name = "flat"
    trained = False

    def predict(self, rows: Any) -> np.ndarray:
        return np.zeros(len(np.atleast_2d(np.asarray(rows))))


class DqlFamily:
    """The deep-Q trading agent (`training.families.base.ModelFamily`)."""

    name: ClassVar[str] = "dql"
    artifact_format: ClassVar[str] = "retrain-console/dql/1"

    def inputs(self, params: Mapping[str, Any]) -> tuple[InputNeed, ...]:
        return (
            InputNeed(
                "features",
                "the symbol's feature file (training.features; `console features build`)",
                columns=("timestamp", "open", "close"),
            ),
        )

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return DqlParams.from_mapping(params).to_dict()

    def fit(self, job: FitJob, on_progress: ProgressSink) -> FittedDql:
        from training.rl.ddqn import checkpoint_episode, pick_device, train_ddqn
        from training.rl.env import TradingEnv
        from training.rl.market import load_market

        params = DqlParams.from_mapping(job.params)
        if params.fresh:
            shutil.rmtree(job.work_dir, ignore_errors=True)
        market = load_market(
            _input(job, "features"),
            window=params.window,
            longest_feature_window=params.longest_feature_window,
            expected_hash=params.expected_hash,
            min_rows_per_part=min(params.episode_length, 2 * params.min_decisions),
        )
        if market.symbol != job.unit:
            raise BadTrainingConfig(f"{_input(job, 'features')} holds features for {market.symbol}, not {job.unit}")
        costs = TradingCosts.for_symbol(job.costs, job.unit) if job.costs else TradingCosts()
        env = TradingEnv(
            market=market, part="train", positions=params.positions, costs=costs, episode_length=params.episode_length
        )
        agent = replace_seed(params, job.seed)
        checkpoint = Path(job.work_dir) / CHECKPOINT_NAME
        device = str(pick_device(job.device))
        on_progress(
            Progress(
                job.unit,
                0,
                params.episodes,
                kind="start",
                metrics={
                    "rows": float(len(market.open)),
                    "features": float(market.n_features),
                    "train": float(len(market.rows("train"))),
                    "val": float(len(market.rows("val"))),
                    "test": float(len(market.rows("test"))),
                    "resumed_from": float(checkpoint_episode(checkpoint)),
                },
                notes={"device": device, "agent_type": params.agent_type},
            )
        )

        def episode_line(record: dict[str, float]) -> None:
            if "checkpoint" in record:
                from training.families.lstm import record_checkpoint

                record_checkpoint(checkpoint, int(record["checkpoint"]))
            on_progress(Progress(job.unit, int(record["episode"]), params.episodes, kind="episode", metrics=record))

        began = time.time()
        net: Any
        if params.agent_type == "dqn":
            from training.rl.sb3_agent import train_sb3_dqn

            net, log, resumed = train_sb3_dqn(env, agent, checkpoint, device=job.device, on_episode=episode_line)
        else:
            result = train_ddqn(env, agent, checkpoint, device=job.device, on_episode=episode_line)
            net, log, resumed = result.net, result.log, result.resumed_from
        return FittedDql(job.unit, market, params, costs, net, log, resumed, device, time.time() - began)

    def evaluate(self, fitted: FittedDql, job: FitJob) -> Evaluation:
        from training.rl.env import side_cost
        from training.rl.judge import evaluate_positions, greedy_positions

        env_kwargs = {"positions": fitted.params.positions, "costs": fitted.costs}
        positions = greedy_positions(fitted.market, "test", fitted.act, env_kwargs)
        evaluation, curves = evaluate_positions(fitted.unit, fitted.market, "test", positions, side_cost(fitted.costs))
        fitted.judged = {"evaluation": evaluation.to_dict(), "curves": curves}
        return evaluation

    def rules(self, params: Mapping[str, Any]) -> tuple[GateRule, ...]:
        from training.rl.judge import dql_rules

        p = DqlParams.from_mapping(params)
        return dql_rules(min_trades=p.min_trades, alpha=p.alpha, min_decisions=p.min_decisions)

    # --- save and load ------------------------------------------------------------------------

    def save(self, fitted: FittedDql, folder: Path) -> tuple[str, ...]:
        from training.families.artifacts import state_dict_to_arrays

        folder = Path(folder)
        market, params = fitted.market, fitted.params
        save_arrays(folder / "weights.npz", state_dict_to_arrays(fitted.net.state_dict()))
        save_json(
            folder / "config.json",
            {
                "family": self.name,
                "format": self.artifact_format,
                "params": params.to_dict(),
                "network": {
                    "kind": "mlp" if params.agent_type == "dqn" else "dueling",
                    "n_obs": params.window * market.n_features + 2,
                    "n_actions": len(params.positions),
                    "hidden": list(params.agent.hidden),
                },
                "costs": asdict(fitted.costs),
            },
        )
        save_json(
            folder / "features.json",
            {
                "symbol": fitted.unit,
                "feature_names": list(market.feature_names),
                "feature_count": market.n_features,
                "feature_hash": market.feature_hash,
                "scaler": market.scaler.to_dict(),
                "trained_until": _iso_row(market, int(market.rows("val")[-1]) + 2),
            },
        )
        metrics = {
            "evaluation": fitted.judged.get("evaluation"),
            "training": {
                "episodes": len(fitted.log),
                "resumed_from_episode": fitted.resumed_from,
                "device": fitted.device,
                "seconds": round(fitted.seconds, 3),
                "agent_type": params.agent_type,
            },
        }
        save_json(folder / "metrics.json", metrics)
        save_json(folder / "training_log.json", fitted.log)
        return MODEL_FILES

    def load(self, folder: Path) -> AgentPredictor:
        """The agent in ``folder``: JSON and plain arrays only, so a tampered file never runs."""
        from training.errors import CheckpointMismatch
        from training.families.artifacts import arrays_to_state_dict

        folder = Path(folder)
        config = load_json(folder / "config.json")
        if not isinstance(config, dict):
            raise CheckpointMismatch(f"{folder / 'config.json'} is not a dql model config")
        check_format(config, self.artifact_format, folder / "config.json")
        net = build_network(config["network"])
        try:
            net.load_state_dict(arrays_to_state_dict(load_arrays(folder / "weights.npz")))
        except RuntimeError as exc:
            raise CheckpointMismatch(f"{folder / 'weights.npz'} does not fit the saved network ({exc})") from None
        positions = tuple(float(p) for p in config["params"]["env"]["positions"])
        return AgentPredictor(net.eval(), positions, config)

    def predictor(self, folder: Path) -> Predictor:
        return self.load(folder)

    def baseline(self, folder: Path | None) -> FlatPredictor:
        return FlatPredictor()

    # --- for the conformance test and the benches ---------------------------------------------

    def synthetic_job(self, root: Path, *, skill: bool, seed: int = 0) -> FitJob:
        """BTC-USD where (with ``skill``) the next open-to-open move leans on feature f0; else a random walk."""
        from training.families.dql.synthetic import write_market_file

        root = Path(root)
        path = write_market_file(root / "features", "BTC-USD", 2400, 3, seed=seed, signal=1.0 if skill else 0.0)
        params = {
            "agent_type": "custom",
            "episodes": 6,
            "episode_length": 200,
            "env": {"window": 2, "longest_feature_window": 10},
            "agent": {
                "hidden": [32, 32],
                "warmup": 200,
                "target_every": 100,
                "eps_fraction": 0.3,
                "gamma": 0.5,
                "learning_rate": 0.002,
                "train_every": 2,
                "seed": 100 + seed,
            },
            "gates": {"min_trades": 30},
        }
        costs = {"default": {"fee_bps": 0.5, "spread_bps": 0.2, "slippage_bps": 0.1}}
        return FitJob(
            self.name, "BTC-USD", {"features": path}, root / "work", params=params, costs=costs, seed=seed, device="cpu"
        )


def build_network(spec: Mapping[str, Any]) -> Any:
    """The saved network's shape, from config.json's ``network`` section."""
    from training.rl.ddqn import DuelingQ
    from training.rl.sb3_agent import mlp_q

    n_obs, n_actions, hidden = int(spec["n_obs"]), int(spec["n_actions"]), [int(h) for h in spec["hidden"]]
    if spec.get("kind") == "mlp":
        return mlp_q(n_obs, n_actions, hidden)
    return DuelingQ(n_obs, n_actions, hidden)


def replace_seed(params: DqlParams, seed: int) -> Any:
    from dataclasses import replace

    return replace(params.agent, seed=params.agent.seed + int(seed))


def _iso_row(market: Any, row: int) -> str | None:
    stamps = market.timestamps
    if not len(stamps):
        return None
    import pandas as pd

    return str(pd.Timestamp(stamps[min(row, len(stamps) - 1)]).isoformat()) + "Z"


def _input(job: FitJob, channel: str) -> Path:
    try:
        return Path(job.inputs[channel])
    except KeyError:
        raise MissingFeatureInput(f"the {job.unit} job was given no {channel!r} input") from None
