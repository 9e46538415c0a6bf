"""Benchmark the trading environment: steps per second on one core, and its overhead inside
stable-baselines3's DQN training loop against CartPole-v1 in the same run.

    .venv/bin/python scripts/bench/dql_env.py [--steps 200000] [--sb3-steps 5000] [--features 20] [--window 16]

Targets (issue 16): >= 50,000 env.step per second; <= 10% more time per SB3 training step
than CartPole-v1. Everything runs on one thread (torch and the environment).

Ours and CartPole-v1 run interleaved ``--repeats`` times and the median of each is
reported, so a burst of load on a shared machine does not land on one side only. Two
comparisons: against CartPole-v1 as it is (our larger observation, window x features + 2
inputs, also means a larger first layer in the same ``net_arch``: what a training step costs
on our environment), and against CartPole-v1 with its 4 inputs padded with zeros to ours
(the same network on both sides: what the environment itself adds).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def env_steps_per_second(data_file: Path, steps: int, window: int) -> tuple[float, float]:
    import gymnasium as gym

    import training.rl  # noqa: F401 - registers the id
    from training.rl.env import TradingEnv

    out = []
    for env in (TradingEnv(data_file, window=window, episode_length=1024),
                gym.make("RetrainConsole/Trading-v0", data_file=str(data_file), window=window, episode_length=1024)):  # fmt: skip
        actions = np.random.default_rng(0).integers(0, 3, size=steps)
        env.reset(seed=0)
        began = time.perf_counter()
        for a in actions:
            _, _, terminated, truncated, _ = env.step(int(a))
            if terminated or truncated:
                env.reset()
        out.append(steps / (time.perf_counter() - began))
    return out[0], out[1]


def padded_cartpole(size: int) -> object:
    """CartPole-v1 with its observation padded with zeros to ``size`` inputs (same network as ours)."""
    import gymnasium as gym

    class Padded(gym.ObservationWrapper):
        def __init__(self, env: gym.Env) -> None:
            super().__init__(env)
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
            self._out = np.zeros(size, dtype=np.float32)

        def observation(self, observation: np.ndarray) -> np.ndarray:
            out = self._out.copy()
            out[: len(observation)] = observation
            return out

    return Padded(gym.make("CartPole-v1"))


def sb3_seconds_per_step(env: object, steps: int) -> float:
    from stable_baselines3 import DQN

    model = DQN("MlpPolicy", env, learning_starts=500, buffer_size=50_000, batch_size=64, train_freq=1,
                target_update_interval=250, policy_kwargs={"net_arch": [64, 64]}, seed=0, device="cpu", verbose=0)  # fmt: skip
    began = time.perf_counter()
    model.learn(total_timesteps=steps)
    return (time.perf_counter() - began) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--sb3-steps", type=int, default=5_000)
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import gymnasium as gym
    import torch

    torch.set_num_threads(1)
    from training.families.dql.synthetic import write_market_file
    from training.rl.env import TradingEnv

    with tempfile.TemporaryDirectory() as tmp:
        data = write_market_file(Path(tmp), "BTC-USD", args.rows, args.features, seed=0)
        raw, wrapped = env_steps_per_second(data, args.steps, args.window)
        print(
            f"env.step per second, one core: {raw:,.0f} (TradingEnv), {wrapped:,.0f} (gymnasium.make, checker wrappers)"
        )
        print(f"  observation: {args.window} x {args.features} features + 2; target >= 50,000")
        size = args.window * args.features + 2
        runs: dict[str, list[float]] = {"ours": [], "cartpole": [], "padded": []}
        for _ in range(args.repeats):  # interleaved: load bursts hit every side alike
            runs["ours"].append(sb3_seconds_per_step(TradingEnv(data, window=args.window, episode_length=1024),
                                                     args.sb3_steps))  # fmt: skip
            runs["cartpole"].append(sb3_seconds_per_step(gym.make("CartPole-v1"), args.sb3_steps))
            runs["padded"].append(sb3_seconds_per_step(padded_cartpole(size), args.sb3_steps))
    ours, cart, padded = (float(np.median(runs[k])) for k in ("ours", "cartpole", "padded"))
    print(f"SB3 DQN seconds per training step (median of {args.repeats}, {args.sb3_steps} steps each): "
          f"ours {ours * 1e3:.3f} ms, CartPole-v1 {cart * 1e3:.3f} ms")  # fmt: skip
    print(f"  overhead {(ours / cart - 1) * 100:+.1f}% against CartPole-v1 as it is (same net_arch, {size} inputs vs 4)")
    print(f"  overhead {(ours / padded - 1) * 100:+.1f}% against CartPole-v1 padded to {size} inputs "
          f"({padded * 1e3:.3f} ms: the same network; what the environment adds, target <= +10%)")  # fmt: skip


if __name__ == "__main__":
    main()
