"""Parameters of the retrain checklist's steps, shared by the placeholders and the real steps.

A step implementation uses the class named here as its `Params`, so `retrain.toml` stays
valid whichever steps have landed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from console.checklist.step import StepParams, Symbol, _no_duplicates

Timeframe = Literal["1m", "5m", "15m", "1h"]
ALL_TIMEFRAMES: tuple[Timeframe, ...] = ("1m", "5m", "15m", "1h")


def check_backend(name: str) -> str:
    """A registered training backend's name (`remote.backends.BACKENDS`)."""
    from remote.backends import backend_names

    if name not in backend_names():
        raise ValueError(f"unknown training backend {name!r} (known: {', '.join(backend_names()) or 'none'})")
    return name


Backend = Annotated[str, AfterValidator(check_backend)]


class BackendParams(StepParams):
    """For the steps whose work depends on where training runs."""

    backend: Backend = "ssh"
    """The training backend (`remote.backends`); ``console run --backend NAME`` overrides it."""


class SymbolsParams(StepParams):
    symbols: Annotated[list[Symbol], AfterValidator(_no_duplicates)] = Field(min_length=1)


class FetchParams(SymbolsParams):
    timeframes: list[Timeframe] = Field(default_factory=lambda: list(ALL_TIMEFRAMES), min_length=1)
    days: int = Field(30, ge=1, le=3650)
    fundamentals: bool = True


class TimeframeParams(StepParams):
    timeframe: Timeframe = "1m"
    """The candles each feature row is, and so the model's input: 1m (the runbook's), or 1h
    (`console train cloud --timeframe 1h`). Files of a longer base live in ``features/<tf>/``."""


class FeaturesParams(SymbolsParams, TimeframeParams):
    pass


class VerifyCountsParams(SymbolsParams, TimeframeParams):
    pass


class LaunchParams(BackendParams):
    instance_type: str = "g5.xlarge"
    alt_instance_type: str = "g4dn.xlarge"
    budget_usd: float = Field(10.0, gt=0, le=1_000_000)
    max_runtime_hours: float = Field(4.0, gt=0, le=24 * 28)


class SyncParams(SymbolsParams, BackendParams):
    pass


class TrainParams(SymbolsParams, BackendParams, TimeframeParams):
    epochs: int = Field(15, ge=1, le=1000)
    mode: Literal["sequential", "parallel", "hybrid"] = "hybrid"
    max_concurrent: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = 2
    """Symbols at once in hybrid mode, or ``auto``: sized on the training host to its GPUs
    (`training.gpu_slots`: several per GPU, spread over them; two without a GPU)."""
    window: int = Field(60, ge=2, le=10_000)
    horizon: int = Field(15, ge=1, le=10_000)
    threshold: float = Field(0.0, ge=0.0, lt=0.5)
    """The narrowest band of the long/short rule (a side is taken when |P(up) - 0.5| > threshold);
    the trainer may widen it on the validation part. The model keeps its band in its config,
    so its after-cost test figures and the dry run use the same one."""
    hidden_size: int | None = Field(None, ge=1, le=4096)
    """LSTM units per layer; None keeps the trainer's default (64)."""
    num_layers: int | None = Field(None, ge=1, le=16)
    """Stacked LSTM layers; None keeps the trainer's default (2)."""
    sample_stride: int | None = Field(None, ge=1, le=10_000)
    """Train each epoch on every k-th window (rotating); None keeps the trainer's default (1)."""
    weight_decay: float | None = Field(None, ge=0.0, lt=1.0)
    """Adam's L2 penalty; None keeps the trainer's default (0)."""
    cuda_graph: Literal["off", "auto"] | None = None
    """``auto`` records the train step as one CUDA graph on a GPU that supports it (same
    updates, far fewer launches); None keeps the trainer's default (off)."""
    family: str = Field("lstm", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    """The model family trained (`training.families`); ``lstm`` reads the settings above."""
    family_params: dict[str, Any] = Field(default_factory=dict)
    """Another family's settings, as its ``check_params`` reads them (a ``gates`` key is its
    gates); checked on the training host, where the family lives."""


class UploadParams(SymbolsParams, BackendParams):
    pass


class TerminateParams(BackendParams):
    pass


class DownloadParams(SymbolsParams):
    pass


class AlignmentParams(SymbolsParams):
    pass


class DryrunParams(SymbolsParams):
    iterations: int = Field(5, ge=1, le=10_000)
