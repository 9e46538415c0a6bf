"""stable-baselines3's DQN on the same environment (``--agent-type dqn``).

SB3 saves a zip whose settings are cloudpickled, so loading one runs code; we keep only
the half that is data: the Q network's weights (its ``q_net`` is a plain MLP,
Linear-ReLU-...-Linear) go into the family's ``weights.npz`` and are loaded into a plain
`torch.nn.Sequential` of the same shape (`mlp_q`), with no SB3 import on the reading side.

Checkpoints: every ``checkpoint_every`` episodes, the online and target Q weights and the
step count (``torch.save``, read back with ``weights_only=True``); a rerun loads them and
trains the remaining steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from training.atomic import atomic_path
from training.errors import CheckpointMismatch
from training.rl.ddqn import DdqnConfig, pick_device


def mlp_q(n_obs: int, n_actions: int, hidden: Sequence[int]) -> nn.Sequential:
    """The shape of SB3's ``QNetwork.q_net`` (state dict keys ``0.weight``, ``2.weight``, ...)."""
    layers: list[nn.Module] = []
    width = n_obs
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, n_actions))
    return nn.Sequential(*layers)


def train_sb3_dqn(
    env: Any,
    cfg: DdqnConfig,
    checkpoint: Path,
    *,
    device: str = "auto",
    on_episode: Callable[[dict[str, float]], None] = lambda rec: None,
) -> tuple[nn.Sequential, list[dict[str, float]], int]:
    """Train SB3's DQN for ``cfg.episodes`` episodes; returns (q network, episode log, resumed-from episode)."""
    from gymnasium.wrappers import TransformReward
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    dev = pick_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(1)  # as the custom agent (training.rl.ddqn)
    steps_per_episode = env.episode_length
    scale = cfg.reward_scale
    env = TransformReward(env, lambda r: float(r) * scale)  # as the custom agent learns (DdqnConfig.reward_scale)
    total = cfg.episodes * steps_per_episode
    model = DQN(
        "MlpPolicy",
        env,
        learning_rate=cfg.learning_rate,
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.warmup,
        batch_size=cfg.batch_size,
        gamma=cfg.gamma,
        n_steps=cfg.n_step,
        train_freq=cfg.train_every,
        target_update_interval=cfg.target_every,
        exploration_fraction=cfg.eps_fraction,
        exploration_initial_eps=cfg.eps_start,
        exploration_final_eps=cfg.eps_end,
        policy_kwargs={"net_arch": list(cfg.hidden)},
        seed=cfg.seed,
        device=dev,
        verbose=0,
    )
    log: list[dict[str, float]] = []
    done_steps = 0
    if checkpoint.exists():
        done_steps, log = _resume(checkpoint, model)
    resumed_from = len(log)

    class Episodes(BaseCallback):
        reward = 0.0

        def _on_step(self) -> bool:
            self.reward += float(self.locals["rewards"][0]) / scale
            if self.locals["dones"][0]:
                record = {
                    "episode": float(len(log) + 1),
                    "reward": self.reward,
                    "epsilon": float(getattr(self.model, "exploration_rate", 0.0)),
                    "steps": float(self.model.num_timesteps),
                }
                log.append(record)
                self.reward = 0.0
                if len(log) % max(1, cfg.checkpoint_every) == 0 or len(log) == cfg.episodes:
                    _save(checkpoint, self.model, log)
                    record = {**record, "checkpoint": float(len(log))}
                on_episode(record)
            return True

    remaining = total - done_steps
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=Episodes(), reset_num_timesteps=done_steps == 0)
    q = mlp_q(int(env.observation_space.shape[0]), int(env.action_space.n), cfg.hidden)
    q.load_state_dict(model.policy.q_net.q_net.state_dict())
    return q.cpu().eval(), log, resumed_from


def _save(path: Path, model: Any, log: list[dict[str, float]]) -> None:
    payload = {
        "q_net": model.policy.q_net.state_dict(),
        "q_net_target": model.policy.q_net_target.state_dict(),
        "steps": int(model.num_timesteps),
        "log": [dict(r) for r in log],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _resume(path: Path, model: Any) -> tuple[int, list[dict[str, float]]]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.policy.q_net.load_state_dict(state["q_net"])
        model.policy.q_net_target.load_state_dict(state["q_net_target"])
    except Exception as exc:  # noqa: BLE001 - a damaged, tampered or mismatched file is refused
        raise CheckpointMismatch(f"{path} is not a checkpoint of this agent ({exc}); train fresh") from None
    model.num_timesteps = int(state["steps"])
    return int(state["steps"]), list(state["log"])
