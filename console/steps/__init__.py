"""The registered checklist steps; importing this package registers every one.

Each area's steps live in their own module (`data`, `cloud`, `cloud_sync`, `train`,
`checks`). A module that has not landed yet is simply absent: its steps are registered
as placeholders that end BLOCKED with "not implemented yet", never SUCCEEDED.
"""

from __future__ import annotations

import importlib

from console.checklist.step import _REGISTRY, not_landed
from console.steps import params as p

STEP_MODULES = ("builtin", "data", "cloud", "cloud_sync", "train", "checks", "heartbeat")

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
