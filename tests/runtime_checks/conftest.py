"""Fixtures for the runtime-check tests: an isolated environment, a gate key, the market
simulator over real HTTP with a pinned clock, and a models dir with a model that matches."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from remote.sandbox.market_server import MarketSimulator
from runtime_checks.inputs import CoinbaseCandles
from runtime_checks.small import CUTOFF, GRANULARITY, SmallBuilder, write_model, write_training_file


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No developer HOME, AWS or console settings leak in; the gate key lives in the test's dir."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith(("AWS_", "RC_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RC_GATE_KEY_FILE", str(tmp_path / "state" / "gate.key"))


@pytest.fixture
def key_file(tmp_path) -> Path:
    return tmp_path / "state" / "gate.key"


NOW = CUTOFF + 3 * 86_400 + 30
"""The simulator's and the candle source's "now": three days after the training cutoff."""


@pytest.fixture(scope="module")
def simulator():
    sim = MarketSimulator(mode="structured", rate_limit_per_s=1000).start()
    sim.clock = lambda: NOW
    yield sim
    sim.stop()


@pytest.fixture
def candles(simulator) -> CoinbaseCandles:
    return CoinbaseCandles(simulator.url, clock=lambda: NOW, requests_per_s=500)


@pytest.fixture
def builder() -> SmallBuilder:
    return SmallBuilder()


@pytest.fixture
def dirs(tmp_path, builder):
    """features/BTC-USD.parquet (10 days before the cutoff) and a matching model in models/."""
    features, models = tmp_path / "features", tmp_path / "models"
    write_training_file(features, "BTC-USD", mode="structured", days=10, builder=builder)
    spec = builder.spec("BTC-USD")
    write_model(models, "BTC-USD", spec.names, spec.hash)
    return features, models


class FrameCandles:
    """A candle source serving a fixed frame (for stale and gappy feeds the simulator never makes)."""

    def __init__(self, frame: pd.DataFrame, now: float) -> None:
        self.frame, self._now = frame, now

    def now(self) -> float:
        return self._now

    def latest(self, symbol: str, granularity: int, bars: int) -> pd.DataFrame:
        return self.frame.tail(bars).reset_index(drop=True)


@pytest.fixture
def frame_candles():
    from remote.sandbox.market import simulated_candles

    def make(*, end: int = NOW, drop: slice | None = None, now: float = NOW) -> FrameCandles:
        frame = simulated_candles("BTC-USD", end - 600 * GRANULARITY, end // GRANULARITY * GRANULARITY, granularity=GRANULARITY)
        if drop is not None:
            frame = frame.drop(frame.index[drop]).reset_index(drop=True)
        return FrameCandles(frame, now)

    return make
