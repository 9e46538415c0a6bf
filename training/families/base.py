"""The `ModelFamily` seam: *what* is trained, whatever runs it.

A family is a small object with the shape of scikit-learn's estimator contract: it
holds no learned state itself (its `fit` returns the fitted model), and the same
conformance test (``tests/training/test_family_conformance.py``) runs over every
registered family. The scheduler, the training entry points (SSH host, container), the
upload/download, alignment, the dry run and the gate reach a model only through here.

The verbs, in the order a training host calls them (`training.families.run`)::

    inputs(params)            -> InputNeed...   what the job must be given (channels)
    check_params(params)      -> params          validated and defaulted; bad -> TrainingInputError
    fit(job, on_progress)     -> fitted          resumable: a rerun continues from job.work_dir
    evaluate(fitted, job)     -> Evaluation      out of sample, after costs, against baselines,
                                                 with significance figures (families/evaluation)
    rules(params)             -> GateRule...     what promotion and the gate hold it to
    save(fitted, folder)      -> file names      no pickle: weights as .npz / text / JSON
    load(folder)              -> fitted          never executes anything from the files
    predictor(folder)         -> Predictor       what a runtime calls
    baseline(folder | None)   -> Predictor       the fallback when there is no trained model
    synthetic_job(root, skill, seed) -> FitJob   a small job for the conformance test and benches:
                                                 with skill=True there is something to learn and the
                                                 rules must pass; with skill=False nothing may pass

Adding a family: write ``training/families/<name>.py`` (or a package) with a class that
satisfies `ModelFamily`, and add one line to `training.families.FAMILIES`. The
conformance test picks it up; nothing else changes. For a made-up ``arima`` family::

    training/families/arima.py          class ArimaFamily: name = "arima"; artifact_format = "retrain-console/arima/1"
                                                           inputs, check_params, fit, evaluate, rules,
                                                           save, load, predictor, baseline, synthetic_job
    training/families/__init__.py       "arima": "training.families.arima:ArimaFamily",

and ``python -m training.train --family arima --symbol BTC-USD`` (or the scheduler's
``--family``) trains it on any backend; `training.families.lstm` is the worked example.

Errors: bad input raises `training.errors.TrainingInputError` subclasses (exit 2), a
failed fit any `TrainingError` (exit 1). Progress goes through ``on_progress`` only: a
family never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Protocol, runtime_checkable

from training.families.evaluation import Evaluation, GateRule


@dataclass(frozen=True)
class InputNeed:
    """One input channel a family's job needs."""

    channel: str
    """The name a backend uses for it: ``features``, ``context``, ``asset_features``, ``costs``..."""
    description: str
    columns: tuple[str, ...] = ()
    """Columns the file must have (checked by the family; named in any error)."""
    per_unit: bool = True
    """One file per unit (``<channel>/<UNIT>.parquet``) rather than one shared file or folder."""


@dataclass(frozen=True)
class FitJob:
    """One unit of training: which family, which unit, from which inputs, into which folder."""

    family: str
    unit: str
    """A symbol (BTC-USD) or, for families that train one model, its name (``regime``)."""
    inputs: Mapping[str, Path]
    """Channel -> local file or folder, as `ModelFamily.inputs` names them."""
    work_dir: Path
    """Checkpoints live here; a rerun with the same work_dir resumes."""
    params: Mapping[str, Any] = field(default_factory=dict)
    costs: Mapping[str, Any] = field(default_factory=dict)
    """The ``costs`` section: ``{"default": {fee_bps, spread_bps, slippage_bps}, "<SYMBOL>": {...}}``."""
    seed: int = 0
    device: str = "auto"
    """``auto`` takes CUDA when present; ``cpu`` or ``cuda`` force one."""


@dataclass(frozen=True)
class Progress:
    """One step of a fit, for the scheduler's JSON lines and the operator's panes."""

    unit: str
    step: int
    steps: int
    kind: str = "epoch"
    """``epoch`` for networks, ``episode`` for agents, ``round`` for boosting...; ``start`` once,
    before the first step (``step`` 0: what the fit is about to do, and where it resumes from)."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)
    """Words that go with the figures (``device``, ``precision``)."""


@runtime_checkable
class Predictor(Protocol):
    """What a runtime calls; ``trained`` is False for a baseline."""

    name: str
    trained: bool

    def predict(self, rows: Any) -> Any: ...


ProgressSink = Callable[[Progress], None]


@runtime_checkable
class ModelFamily(Protocol):
    """What is trained. See the module docstring for the verbs and their order."""

    name: ClassVar[str]
    artifact_format: ClassVar[str]
    """Written into the saved config (``retrain-console/<family>/<n>``); `load` refuses others."""

    def inputs(self, params: Mapping[str, Any]) -> tuple[InputNeed, ...]: ...

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]: ...

    def fit(self, job: FitJob, on_progress: ProgressSink) -> Any: ...

    def evaluate(self, fitted: Any, job: FitJob) -> Evaluation: ...

    def rules(self, params: Mapping[str, Any]) -> tuple[GateRule, ...]: ...

    def save(self, fitted: Any, folder: Path) -> tuple[str, ...]: ...

    def load(self, folder: Path) -> Any: ...

    def predictor(self, folder: Path) -> Predictor: ...

    def baseline(self, folder: Path | None) -> Predictor: ...

    def synthetic_job(self, root: Path, *, skill: bool, seed: int = 0) -> FitJob: ...
