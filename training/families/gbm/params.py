"""The ``gbm`` family's parameters, from a job's ``params`` mapping, checked once.

``FitJob.params`` for this family::

    {"split": {"horizon": 1, "longest_feature_window": 200, "val_fraction": 0.15, "test_fraction": 0.15},
     "head": {"engine": "lightgbm", "rounds": 300, "learning_rate": 0.05, "num_leaves": 15,
              "min_data_in_leaf": 100, "early_stopping": 30, "threads": 1, "tune_threshold": true},
     "encoder": {"n_components": 50},                  # used when the encoder is fitted (engine)
     "gates": {"min_trades": 30, "alpha": 0.05, "beat_baselines": true},
     "expected_feature_hash": "sha256:...",          # optional: the caller's
     "fresh": false}                                  # discard the head's checkpoint and refit

Trading costs come from ``FitJob.costs`` (``{"default": {...}, "<SYMBOL>": {...}}``, as
`training.families.gbm.costs` measures them from the order book).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from training.dataset import WindowSpec
from training.errors import BadTrainingConfig
from training.families.evaluation import DEFAULT_ALPHA

SECTIONS = ("split", "head", "encoder", "gates", "expected_feature_hash", "fresh")
ENGINES = ("lightgbm", "xgboost")


@dataclass(frozen=True)
class HeadConfig:
    """One coin's boosted head."""

    engine: str = "lightgbm"
    """``lightgbm`` (default) or ``xgboost`` (the xgboost-cpu wheel: no CUDA libraries)."""
    rounds: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.9
    max_bin: int = 63
    """Histogram bins per component: 63 fits a standardised component as well as LightGBM's 255
    here (same best round on the bench) and boosts about a third faster."""
    early_stopping: int = 30
    """Rounds without a better validation log-loss before boosting stops."""
    threads: int = 1
    """LightGBM threads per head: one per head keeps N heads on N cores from oversubscribing."""
    tune_threshold: bool = True
    """Choose the long/short band on the validation part (never the test part)."""
    threshold: float = 0.0


@dataclass(frozen=True)
class GbmGates:
    min_trades: int = 30
    alpha: float = DEFAULT_ALPHA
    beat_baselines: bool = True
    min_samples: int = 50


@dataclass(frozen=True)
class GbmParams:
    split: WindowSpec = field(default_factory=lambda: WindowSpec(window=1, horizon=1, longest_feature_window=200))
    head: HeadConfig = field(default_factory=HeadConfig)
    n_components: int = 50
    gates: GbmGates = field(default_factory=GbmGates)
    expected_hash: str | None = None
    fresh: bool = False

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> "GbmParams":
        params = dict(params or {})
        unknown = sorted(set(params) - set(SECTIONS))
        if unknown:
            raise BadTrainingConfig(f"unknown gbm parameter(s): {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
        split_raw = {"window": 1, **dict(params.get("split") or {})}
        if int(split_raw.get("window", 1)) != 1:
            raise BadTrainingConfig("gbm heads read one row per sample: split.window must be 1")
        split = _section(WindowSpec(window=1, horizon=1, longest_feature_window=200), split_raw, "split")
        split.validate()
        head = _section(HeadConfig(), dict(params.get("head") or {}), "head")
        if head.engine not in ENGINES:
            raise BadTrainingConfig(f"unknown head engine {head.engine!r} (known: {', '.join(ENGINES)})")
        if head.rounds < 1 or head.threads < 1 or head.num_leaves < 2 or not 0 < head.learning_rate <= 1:
            raise BadTrainingConfig("head: rounds and threads must be >= 1, num_leaves >= 2, learning_rate in (0, 1]")
        gates = _section(GbmGates(), dict(params.get("gates") or {}), "gates")
        if not 0.0 < gates.alpha < 0.5:
            raise BadTrainingConfig(f"gate alpha {gates.alpha} must be between 0 and 0.5")
        try:
            n_components = int(dict(params.get("encoder") or {}).get("n_components", 50))
        except (TypeError, ValueError):
            raise BadTrainingConfig("encoder.n_components must be a whole number") from None
        if n_components < 1:
            raise BadTrainingConfig("encoder.n_components must be at least 1")
        expected = params.get("expected_feature_hash")
        return cls(split, head, n_components, gates, str(expected) if expected else None, bool(params.get("fresh")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": asdict(self.split),
            "head": asdict(self.head),
            "encoder": {"n_components": self.n_components},
            "gates": asdict(self.gates),
            "expected_feature_hash": self.expected_hash,
            "fresh": self.fresh,
        }


def _section(default: Any, raw: Mapping[str, Any], name: str) -> Any:
    """``default`` with ``raw``'s settings, each cast to the default's type; unknown keys refused."""
    known = {f.name: f for f in fields(default)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise BadTrainingConfig(f"unknown {name} setting(s): {', '.join(unknown)} (known: {', '.join(known)})")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        kind = type(getattr(default, key))
        try:
            cast = kind(value) if kind is not bool else bool(value)
        except (TypeError, ValueError):
            raise BadTrainingConfig(f"{name}.{key} = {value!r} is not a {kind.__name__}") from None
        if isinstance(cast, float) and not math.isfinite(cast):
            raise BadTrainingConfig(f"{name}.{key} must be a finite number")
        values[key] = cast
    return replace(default, **values)
