"""The trading environment: one symbol's features, discrete positions, fills at the next open.

``gymnasium.make("RetrainConsole/Trading-v0", data_file=PATH)`` (registered when
`training.rl` is imported) gives an environment over a feature file; ``market=`` takes an
already loaded `training.rl.market.Market` instead.

- **Observation** (float32): the last ``window`` rows of scaled features, flattened, then
  the position held and its unrealised return (position x (close / entry - 1); 0 when flat).
- **Actions**: ``Discrete(len(positions))``; action ``i`` asks for position ``positions[i]``
  (short, flat, long by default: ``(-1, 0, 1)``).
- **Timing**: the agent sees bar ``t`` up to its close and decides; the order fills at bar
  ``t + 1``'s open (``info["fill_price"]``), never at a price the agent has already seen,
  and the position is held until bar ``t + 2``'s open, where the next decision fills.
- **Reward**: the log return of the position after costs, ``position x ln(open[t+2] /
  open[t+1]) + ln(1 - cost x |position change|)`` with ``cost`` the per-side fee + half the
  spread + slippage of the family's cost configuration (`training.metrics.TradingCosts`).
- **Episodes**: contiguous slices of ``episode_length`` decisions inside one part
  (``train`` by default; ``val`` and ``test`` for judging), starting at a random row of
  the part (or ``options={"start": row}``); the last decision's episode is truncated,
  never terminated (the market goes on).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from training.dataset import Scaler
from training.errors import BadTrainingConfig
from training.metrics import TradingCosts
from training.rl.market import Market, load_market

DEFAULT_POSITIONS = (-1.0, 0.0, 1.0)


def side_cost(costs: TradingCosts | Mapping[str, Any] | None, symbol: str = "") -> float:
    """The per-side cost as a fraction of notional (half a round trip)."""
    if costs is None:
        costs = TradingCosts()
    elif not isinstance(costs, TradingCosts):
        costs = (
            TradingCosts.for_symbol(costs, symbol)
            if "default" in costs or symbol in costs
            else TradingCosts(**{k: float(v) for k, v in costs.items() if k in TradingCosts.__dataclass_fields__})
        )
    return costs.round_trip / 2.0


class TradingEnv(gym.Env):
    """One symbol's market as a gymnasium environment (see the module docstring)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        data_file: str | Path | None = None,
        *,
        market: Market | None = None,
        part: str = "train",
        window: int = 16,
        positions: Sequence[float] = DEFAULT_POSITIONS,
        costs: TradingCosts | Mapping[str, Any] | None = None,
        episode_length: int = 256,
        random_start: bool = True,
        scaler: Scaler | None = None,
        longest_feature_window: int = 0,
    ) -> None:
        if market is None:
            if data_file is None:
                raise BadTrainingConfig("the trading environment needs data_file= (a feature file) or market=")
            market = load_market(
                Path(data_file), window=window, scaler=scaler, longest_feature_window=longest_feature_window
            )
        positions = tuple(float(p) for p in positions)
        if len(positions) < 2 or len(set(positions)) != len(positions):
            raise BadTrainingConfig(f"positions must be at least two distinct sizes, got {positions}")
        if episode_length < 1:
            raise BadTrainingConfig(f"episode_length must be at least 1, got {episode_length}")
        self.market = market
        self.part = part
        self.rows = market.rows(part)
        self.window = market.window
        self.positions = positions
        self.cost = side_cost(costs, market.symbol)
        self.episode_length = min(int(episode_length), len(self.rows))
        self.random_start = random_start
        n_obs = self.window * market.n_features + 2
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(n_obs,), dtype=np.float32)
        self.action_space = spaces.Discrete(len(positions))
        self._flat_features = np.ascontiguousarray(market.features, dtype=np.float32).reshape(-1)
        self._nf = market.n_features
        self._log_keep: dict[float, float] = {}  # ln(1 - cost x change), per change size
        self._obs = np.zeros(n_obs, dtype=np.float32)
        self._t = int(self.rows[0])
        self._end = self._t
        self._position = 0.0
        self._entry = math.nan

    # --- gymnasium API ------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        first, last = int(self.rows[0]), int(self.rows[-1])
        if options and "start" in options:
            start = int(options["start"])
            if not first <= start <= last:
                raise BadTrainingConfig(f"start row {start} is outside the {self.part} part ({first}..{last})")
        elif self.random_start:
            start = int(self.np_random.integers(first, last - self.episode_length + 2))
        else:
            start = first
        self._t = start
        self._end = min(start + self.episode_length - 1, last)
        self._position = 0.0
        self._entry = math.nan
        return self._observe(), {"row": start}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        t = self._t
        target = self.positions[int(action)]
        change = abs(target - self._position)
        opens = self.market.open
        fill = float(opens[t + 1])
        keep = self._log_keep.get(change)
        if keep is None:
            keep = self._log_keep[change] = math.log(max(1e-12, 1.0 - self.cost * change))
        gross = target * float(self.market.held_log_return[t])
        if change:
            self._entry = fill if target else math.nan
        self._position = target
        self._t = t + 1
        truncated = t >= self._end
        info = {"row": t, "fill_row": t + 1, "fill_price": fill, "position": target, "gross": gross, "cost": -keep}
        return self._observe(), gross + keep, False, truncated, info

    # --- what the agent sees ------------------------------------------------------------------

    def _observe(self) -> np.ndarray:
        t, nf, obs = self._t, self._nf, self._obs
        obs[:-2] = self._flat_features[(t - self.window + 1) * nf : (t + 1) * nf]
        obs[-2] = self._position
        obs[-1] = self._position * (self.market.close[t] / self._entry - 1.0) if self._position else 0.0
        return obs.copy()

    def observation_at(self, row: int, position: float = 0.0, entry: float = math.nan) -> np.ndarray:
        """The observation at ``row`` with ``position`` held since a fill at ``entry``."""
        self._t, self._position, self._entry = int(row), float(position), float(entry)
        return self._observe()
