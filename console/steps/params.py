"""Parameters of the retrain checklist's steps, shared by the placeholders and the real steps.

A step implementation uses the class named here as its `Params`, so `retrain.toml` stays
valid whichever steps have landed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from console.checklist.step import StepParams, Symbol

Timeframe = Literal["1m", "5m", "15m", "1h"]


class SymbolsParams(StepParams):
    symbols: list[Symbol] = Field(min_length=1)


class FetchParams(SymbolsParams):
    timeframes: list[Timeframe] = Field(default_factory=lambda: ["1m", "5m", "15m", "1h"], min_length=1)
    days: int = Field(30, ge=1, le=3650)
    fundamentals: bool = True


class FeaturesParams(SymbolsParams):
    pass


class VerifyCountsParams(SymbolsParams):
    pass


class LaunchParams(StepParams):
    instance_type: str = "g5.xlarge"
    alt_instance_type: str = "g4dn.xlarge"
    budget_usd: float = Field(10.0, gt=0)
    max_runtime_hours: float = Field(4.0, gt=0)


class SyncParams(SymbolsParams):
    pass


class TrainParams(SymbolsParams):
    epochs: int = Field(15, ge=1, le=1000)
    mode: Literal["sequential", "parallel", "hybrid"] = "hybrid"
    max_concurrent: int = Field(2, ge=1, le=64)
    window: int = Field(60, ge=2, le=10_000)
    horizon: int = Field(15, ge=1, le=10_000)
    threshold: float = Field(0.0, ge=0.0, lt=0.5)
    """The long/short rule trades only when |P(up) - 0.5| > threshold; the model keeps it in its
    config, so its after-cost test figures and the dry run use the same one."""


class UploadParams(SymbolsParams):
    pass


class TerminateParams(StepParams):
    pass


class DownloadParams(SymbolsParams):
    pass


class AlignmentParams(SymbolsParams):
    pass


class DryrunParams(SymbolsParams):
    iterations: int = Field(5, ge=1, le=10_000)
