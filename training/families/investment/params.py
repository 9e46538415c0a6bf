"""A job's ``params`` for the two investment families: defaults, types, and refusals.

Keys may be spelt with dashes (the seed's flags: ``regime-type``) or underscores. An
unknown key, a value of the wrong type, a non-positive count or an unknown model type
is bad input, named in one line.

A job from ``python -m training.train`` (the scheduler on a leased host, `console run
--checklist investment`) carries its params in sections, ``{"train": {...}, "gates": ...,
"features": ..., "fresh": bool}``: the family reads ``train`` (and ``fresh``) from it
(`own_params`). Its one input file comes as the ``features`` channel (``<UNIT>.parquet``);
`input_path` takes it when the family's own channel is not given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from training.errors import BadTrainingConfig, MissingFeatureInput
from training.families.base import FitJob

_SECTIONS = {"train", "gates", "features", "costs", "expected_feature_hash", "fresh", "schedule"}


def own_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The family's own keys: ``raw`` itself, or its ``train`` section when it is a sectioned job."""
    raw = dict(raw or {})
    if isinstance(raw.get("train"), Mapping) and set(raw) <= _SECTIONS:
        own = dict(raw["train"])
        if raw.get("fresh"):
            own["fresh"] = True
        return own
    return raw


def input_path(job: FitJob, channel: str) -> Path:
    """The job's ``channel`` input, else its ``features`` file (the trainer's one input per unit)."""
    for name in (channel, "features"):
        if name in job.inputs:
            return Path(job.inputs[name])
    raise MissingFeatureInput(f"the {job.unit} job was given no {channel!r} input")


def read_params(
    raw: Mapping[str, Any], defaults: Mapping[str, Any], family: str, choices: Mapping[str, tuple[str, ...]]
) -> dict[str, Any]:
    """``defaults`` overlaid with ``raw`` (same keys only), each value of its default's type."""
    out = dict(defaults)
    for key, value in own_params(raw).items():
        name = str(key).replace("-", "_")
        if name not in defaults:
            known = ", ".join(sorted(defaults))
            raise BadTrainingConfig(f"unknown {family} parameter {key!r} (known: {known})")
        kind = type(defaults[name])
        try:
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError
                out[name] = value
            else:
                out[name] = kind(value)
        except (TypeError, ValueError):
            raise BadTrainingConfig(f"{family} parameter {key!r} must be a {kind.__name__}, not {value!r}") from None
        if kind in (int, float) and not isinstance(value, bool) and out[name] <= 0 and name != "seed":
            raise BadTrainingConfig(f"{family} parameter {key!r} must be positive, not {value!r}")
    for name, allowed in choices.items():
        if out[name] not in allowed:
            raise BadTrainingConfig(
                f"unknown {family} {name.replace('_', '-')} {out[name]!r} (known: {', '.join(allowed)})"
            )
    if not 0.0 < float(out.get("alpha", 0.05)) < 0.5:
        raise BadTrainingConfig(f"{family} parameter 'alpha' must be between 0 and 0.5, not {out['alpha']!r}")
    return out
