"""Our own compact agent: Double + Dueling DQN with n-step returns, in PyTorch.

- **Dueling**: a shared body, then a state value V(s) and advantages A(s, a);
  Q = V + A - mean(A), so the value of being in a market is learnt apart from the choice.
- **Double**: the online network picks the next action, the target network values it
  (the plain max over the target network overestimates).
- **n-step**: the target sums ``n`` rewards before bootstrapping
  (``R = r_t + g r_{t+1} + ... + g^(n-1) r_{t+n-1} + g^n Q(s_{t+n}, a*)``); a truncated
  episode still bootstraps from its last observation (the market did not end).

`train_ddqn` runs ``episodes`` episodes on an environment, with epsilon-greedy exploration
decaying linearly, a replay buffer, Huber loss and a hard target update. It saves a
checkpoint (``torch.save`` of tensors and numbers only, read back with
``weights_only=True``) every ``checkpoint_every`` episodes and resumes from one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from training.atomic import atomic_path
from training.errors import CheckpointMismatch


class DuelingQ(nn.Module):
    """obs -> Q per action, through a shared body and value/advantage heads."""

    def __init__(self, n_obs: int, n_actions: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_obs
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        self.body = nn.Sequential(*layers)
        self.value = nn.Linear(width, 1)
        self.advantage = nn.Linear(width, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = self.body(obs)
        a = self.advantage(z)
        return self.value(z) + a - a.mean(dim=-1, keepdim=True)


@dataclass(frozen=True)
class DdqnConfig:
    episodes: int = 30
    hidden: tuple[int, ...] = (64, 64)
    learning_rate: float = 1e-3
    gamma: float = 0.9
    n_step: int = 3
    batch_size: int = 64
    buffer_size: int = 50_000
    warmup: int = 500
    train_every: int = 1
    target_every: int = 250
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_fraction: float = 0.5
    """Share of all steps over which epsilon decays."""
    checkpoint_every: int = 5
    reward_scale: float = 100.0
    """Rewards are log returns of one bar (about 1e-3); the agent learns on them times this,
    so the Q differences stand clear of the network's noise. Reported rewards are unscaled."""
    seed: int = 0


@dataclass
class DdqnResult:
    net: DuelingQ
    log: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0


class _Replay:
    def __init__(self, capacity: int, n_obs: int) -> None:
        self.obs = np.zeros((capacity, n_obs), np.float32)
        self.next_obs = np.zeros((capacity, n_obs), np.float32)
        self.action = np.zeros(capacity, np.int64)
        self.reward = np.zeros(capacity, np.float32)
        self.discount = np.zeros(capacity, np.float32)
        self.size = self.at = 0
        self.capacity = capacity

    def add(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, discount: float) -> None:
        i = self.at
        self.obs[i], self.action[i], self.reward[i], self.next_obs[i], self.discount[i] = (
            obs,
            action,
            reward,
            next_obs,
            discount,
        )
        self.at = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_ddqn(
    env: Any,
    cfg: DdqnConfig,
    checkpoint: Path,
    *,
    device: str = "auto",
    on_episode: Callable[[dict[str, float]], None] = lambda rec: None,
) -> DdqnResult:
    """Train on ``env`` for ``cfg.episodes`` episodes, resuming from ``checkpoint`` if present."""
    dev = pick_device(device)
    if dev.type == "cpu":
        # A network this small gains nothing from threads, and on a busy machine each extra
        # thread multiplies every step's time (seen: 230 ms a step with the default threads).
        torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    n_obs, n_actions = int(env.observation_space.shape[0]), int(env.action_space.n)
    online = DuelingQ(n_obs, n_actions, cfg.hidden).to(dev)
    target = DuelingQ(n_obs, n_actions, cfg.hidden).to(dev)
    target.load_state_dict(online.state_dict())
    optim = torch.optim.Adam(online.parameters(), lr=cfg.learning_rate)
    log: list[dict[str, float]] = []
    start_episode = steps = 0
    if checkpoint.exists():
        start_episode, steps, log = _resume(checkpoint, online, target, optim, n_obs, n_actions)
    replay = _Replay(cfg.buffer_size, n_obs)
    total_steps = max(1, cfg.episodes * env.episode_length)
    decay = max(1.0, cfg.eps_fraction * total_steps)
    gamma_n = cfg.gamma ** np.arange(cfg.n_step + 1)
    for episode in range(start_episode + 1, cfg.episodes + 1):
        obs, _ = env.reset(seed=int(rng.integers(1 << 31)))
        pending: deque[tuple[np.ndarray, int, float]] = deque()
        total, losses, done = 0.0, [], False
        while not done:
            eps = max(cfg.eps_end, cfg.eps_start - (cfg.eps_start - cfg.eps_end) * steps / decay)
            if rng.random() < eps:
                action = int(rng.integers(n_actions))
            else:
                with torch.no_grad():
                    action = int(online(torch.as_tensor(obs, device=dev)).argmax())
            next_obs, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            total += reward
            steps += 1
            pending.append((obs, action, reward * cfg.reward_scale))
            if len(pending) == cfg.n_step or done:
                # Flush: every pending start whose n-step window is complete (all of them at the end).
                while pending and (len(pending) == cfg.n_step or done):
                    rewards = [r for _, _, r in pending]
                    ret = float(np.dot(gamma_n[: len(rewards)], rewards))
                    discount = 0.0 if terminated else float(gamma_n[len(rewards)])
                    first_obs, first_action, _ = pending.popleft()
                    replay.add(first_obs, first_action, ret, next_obs, discount)
                    if not done:
                        break
            obs = next_obs
            if replay.size >= max(cfg.warmup, cfg.batch_size) and steps % cfg.train_every == 0:
                losses.append(_learn(online, target, optim, replay, cfg.batch_size, rng, dev))
            if steps % cfg.target_every == 0:
                target.load_state_dict(online.state_dict())
        record = {
            "episode": float(episode),
            "reward": float(total),
            "epsilon": float(eps),
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "steps": float(steps),
        }
        log.append(record)
        if episode % max(1, cfg.checkpoint_every) == 0 or episode == cfg.episodes:
            save_checkpoint(checkpoint, online, target, optim, episode, steps, log, n_obs, n_actions)
            record = {**record, "checkpoint": float(episode)}
        on_episode(record)
    return DdqnResult(online.cpu().eval(), log, start_episode)


def _learn(
    online: DuelingQ, target: DuelingQ, optim: Any, replay: _Replay, batch: int, rng: Any, dev: torch.device
) -> float:
    idx = rng.integers(0, replay.size, size=batch)
    obs = torch.as_tensor(replay.obs[idx], device=dev)
    nxt = torch.as_tensor(replay.next_obs[idx], device=dev)
    act = torch.as_tensor(replay.action[idx], device=dev)
    ret = torch.as_tensor(replay.reward[idx], device=dev)
    disc = torch.as_tensor(replay.discount[idx], device=dev)
    with torch.no_grad():
        best = online(nxt).argmax(dim=1, keepdim=True)
        y = ret + disc * target(nxt).gather(1, best).squeeze(1)
    q = online(obs).gather(1, act[:, None]).squeeze(1)
    loss = nn.functional.smooth_l1_loss(q, y)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(online.parameters(), 10.0)
    optim.step()
    return float(loss.detach())


def save_checkpoint(
    path: Path,
    online: nn.Module,
    target: nn.Module,
    optim: Any,
    episode: int,
    steps: int,
    log: list[dict[str, float]],
    n_obs: int,
    n_actions: int,
) -> None:
    payload = {
        "online": online.state_dict(),
        "target": target.state_dict(),
        "optim": optim.state_dict(),
        "episode": int(episode),
        "steps": int(steps),
        "log": [dict(r) for r in log],
        "shape": [int(n_obs), int(n_actions)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def checkpoint_episode(path: Path) -> int:
    """The episode a checkpoint holds (0 when there is none or it cannot be read)."""
    if not Path(path).exists():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["episode"])
    except Exception:  # noqa: BLE001 - only a label; _resume reports an unreadable checkpoint
        return 0


def _resume(
    path: Path, online: nn.Module, target: nn.Module, optim: Any, n_obs: int, n_actions: int
) -> tuple[int, int, list]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged or tampered file is refused, never run
        raise CheckpointMismatch(
            f"{path} is not a readable agent checkpoint ({exc}); delete it or train fresh"
        ) from None
    if list(state.get("shape", [])) != [n_obs, n_actions]:
        raise CheckpointMismatch(
            f"{path} was saved for {state.get('shape')} (observations, actions), not {[n_obs, n_actions]}; train fresh"
        )
    online.load_state_dict(state["online"])
    target.load_state_dict(state["target"])
    optim.load_state_dict(state["optim"])
    return int(state["episode"]), int(state["steps"]), list(state["log"])
