"""The ``lstm`` family's fallback when there is no trained model: repeat the last move.

It is never a trained model (``trained`` is False): results made with it say so, and the
gate refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LastMovePredictor:
    """P(up) from the last ``horizon``-bar move: 0.55 after a rise, 0.45 otherwise."""

    window: int = 2
    horizon: int = 1
    name: str = "baseline: last move"
    trained: bool = False

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """P(up) for every bar of ``rows`` (closes, oldest first)."""
        close = np.asarray(rows, dtype=np.float64).reshape(-1)
        return self.probabilities_from_close(close, np.arange(len(close)))

    def probabilities_from_close(self, close: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """P(up) at the bars ``ends`` of ``close``."""
        prev = close[np.maximum(ends - self.horizon, 0)]
        return np.where(close[ends] > prev, 0.55, 0.45)

    @property
    def label(self) -> str:
        return self.name
