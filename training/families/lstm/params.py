"""The ``lstm`` family's parameters, from a job's ``params`` mapping, checked once.

``FitJob.params`` for this family (the sections of the trainer's config file)::

    {"train": {"epochs": 15, "window": 60, ...},      # TrainConfig fields (config.py)
     "gates": {"min_trades": 10, "beat_baselines": true, "alpha": 0.05, ...},
     "features": {"multi_timeframe_symbols": [...]},  # to recompute the feature spec's hash
     "expected_feature_hash": "sha256:...",          # the caller's (None trusts the recomputation)
     "fresh": false}                                  # discard the checkpoint and start over

Trading costs come from ``FitJob.costs`` (``{"default": {...}, "<SYMBOL>": {...}}``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from training.dataset import WindowSpec, verify_feature_hash
from training.errors import BadTrainingConfig, FeatureFileProblem, FeatureHashMismatch
from training.families.evaluation import DEFAULT_ALPHA
from training.families.lstm.config import TrainConfig
from training.features.io import FeatureFileError, read_feature_meta
from training.registry import GateRules

SECTIONS = ("train", "gates", "features", "expected_feature_hash", "fresh")


@dataclass(frozen=True)
class LstmParams:
    """Everything that decides how one symbol's model is trained and judged."""

    config: TrainConfig
    gates: GateRules
    """What promotion holds the model to (turned into stock rules by `judge.lstm_rules`)."""
    alpha: float = DEFAULT_ALPHA
    """Significance level of every paired comparison the rules ask for."""
    features: Mapping[str, Any] | None = None
    expected_hash: str | None = None
    fresh: bool = False

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any]) -> "LstmParams":
        """Validated parameters; unknown sections, settings or gates are bad input."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(SECTIONS))
        if unknown:
            raise BadTrainingConfig(f"unknown lstm parameter(s): {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
        gates = dict(params.get("gates") or {})
        try:
            alpha = float(gates.pop("alpha", DEFAULT_ALPHA))
        except (TypeError, ValueError):
            raise BadTrainingConfig(f"gate alpha {gates.get('alpha')!r} is not a number") from None
        if not 0.0 < alpha < 0.5:
            raise BadTrainingConfig(f"gate alpha {alpha} must be between 0 and 0.5")
        try:
            rules = GateRules.from_config(gates)
        except TypeError as exc:
            raise BadTrainingConfig(f"bad quality gates ({exc})") from None
        expected = params.get("expected_feature_hash")
        return cls(
            config=TrainConfig().with_overrides(dict(params.get("train") or {})),
            gates=rules,
            alpha=alpha,
            features=dict(params.get("features") or {}),
            expected_hash=str(expected) if expected else None,
            fresh=bool(params.get("fresh", False)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "train": self.config.to_dict(),
            "gates": {**asdict(self.gates), "alpha": self.alpha},
            "features": dict(self.features or {}),
            "expected_feature_hash": self.expected_hash,
            "fresh": self.fresh,
        }

    @property
    def window_spec(self) -> WindowSpec:
        c = self.config
        return WindowSpec(
            c.window, c.horizon, c.longest_feature_window, c.val_fraction, c.test_fraction, c.holdout_fraction
        )


def recomputed_feature_hash(feature_file: Path, unit: str, params: LstmParams) -> str | None:
    """The hash this code's own feature spec gives the feature file, recomputed here.

    A file that claims the spec version this code ships must carry exactly that spec's
    hash. A file from another spec version is accepted only when the caller vouches for
    its hash (``expected_feature_hash``); otherwise it is refused (rebuild features).
    Returns None when there is nothing to recompute (no spec shipped, or a vouched file).
    """
    try:
        meta = read_feature_meta(feature_file)
    except FeatureFileError as exc:
        raise FeatureFileProblem(str(exc)) from exc
    # The caller's expectation first: its mismatch is the more useful message.
    verify_feature_hash(feature_file, meta.feature_hash, expected_hash=params.expected_hash)
    try:
        from training.features import spec as feature_spec
    except ImportError:
        return None
    code_version = str(getattr(feature_spec, "SPEC_VERSION", ""))
    if meta.spec_version != code_version:
        if params.expected_hash is not None and params.expected_hash == meta.feature_hash:
            return None
        raise FeatureHashMismatch(
            f"{feature_file} was built with feature spec version {meta.spec_version!r} but this code "
            f"ships {code_version!r}; rebuild features (console features build)"
        )
    try:
        config = feature_spec.FeatureConfig.from_mapping(dict(params.features or {}))
        return feature_spec.spec_for(unit, config).hash
    except ValueError as exc:
        raise BadTrainingConfig(f"bad features section in the training config ({exc})") from None


def spec_lookback(feature_file: Path, unit: str, params: LstmParams) -> int:
    """The longest look-back of the file's feature spec in rows, computed from the feature
    definitions (`training.features.spec.FeatureSpec.lookback_rows`: on one-minute rows the 1h
    MACD's is 2,160; on 1h rows the 60-candle return's is 61), when the file was built with
    this code's spec; 0 when it was not (then the configured ``longest_feature_window`` alone
    sets the purge)."""
    try:
        from training.features import spec as feature_spec

        meta = read_feature_meta(feature_file)
        if meta.spec_version != str(getattr(feature_spec, "SPEC_VERSION", "")):
            return 0
        config = feature_spec.FeatureConfig.from_mapping(dict(params.features or {}))
        spec = feature_spec.spec_for(unit, config)
    except (ImportError, FeatureFileError, ValueError):
        return 0
    return int(spec.lookback_rows) if spec.hash == meta.feature_hash else 0
