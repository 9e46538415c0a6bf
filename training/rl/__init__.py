"""Reinforcement learning over our feature files: the trading environment and its agents.

Importing this package registers ``RetrainConsole/Trading-v0`` with gymnasium
(`training.rl.env.TradingEnv`), so ``gymnasium.make("RetrainConsole/Trading-v0",
data_file=PATH)`` gives an environment over a feature file.
"""

from __future__ import annotations

import gymnasium as gym

ENV_ID = "RetrainConsole/Trading-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="training.rl.env:TradingEnv")
