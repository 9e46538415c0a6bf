"""The shipped checklist steps, and the catalog checklists are loaded against.

Each area's steps live in their own module (`data`, `cloud`, `cloud_sync`, `train`,
`checks`). Steps are thin: each asks the resources (`console.resources`), the instances
service (`console.instances`), a training backend or the shared work modules
(`console.market_data`, `console.transfer`, `console.checking`) to act. Nothing outside
this package imports a step module: front ends load checklists through `load_checklist`
here. A step that has not landed yet is registered as a placeholder that ends BLOCKED
with "not implemented yet", never SUCCEEDED.
"""

from __future__ import annotations

import importlib
from typing import Any

from console.checklist import spec as _spec
from console.checklist.step import _REGISTRY, StepCatalog, not_landed
from console.steps import params as p

STEP_MODULES = ("builtin", "data", "cloud", "cloud_sync", "train", "checks", "engine", "dql", "investment")

# The retrain checklist's steps, in order, with the parameters each takes.
RETRAIN_STEPS: tuple[tuple[str, type[p.StepParams]], ...] = (
    ("fetch", p.FetchParams),
    ("features", p.FeaturesParams),
    ("verify-counts", p.VerifyCountsParams),
    ("launch", p.LaunchParams),
    ("sync", p.SyncParams),
    ("train", p.TrainParams),
    ("upload", p.UploadParams),
    ("terminate", p.TerminateParams),
    ("download", p.DownloadParams),
    ("alignment", p.AlignmentParams),
    ("dryrun", p.DryrunParams),
)

for _module in STEP_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_module}")
    except ModuleNotFoundError as exc:  # not landed yet; any other import error is a bug
        if exc.name != f"{__name__}.{_module}":
            raise

for _name, _params in RETRAIN_STEPS:
    if _name not in _REGISTRY:
        not_landed(_name, _params)


def catalog() -> StepCatalog:
    """Every registered step by name: the shipped ones, and any registered since."""
    return dict(_REGISTRY)


def load_checklist(
    name_or_path: str,
    *,
    profile: str = "sandbox",
    overrides: dict[str, Any] | None = None,
    limits: dict[str, float] | None = None,
) -> _spec.ChecklistSpec:
    """`console.checklist.spec.load_checklist` against the shipped steps (``limits``: the operator's
    explicit limits, which only tighten the checklist's; `console.settings_shown.operator_limits`)."""
    return _spec.load_checklist(name_or_path, steps=catalog(), profile=profile, overrides=overrides, limits=limits)
