"""The driver every entry point uses publishes a family's model whole, with its evaluation
and verdict, and promotes it only when its rules pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import pytest

from training import registry
from training.families import FAMILIES
from training.families.base import FitJob, InputNeed, Progress
from training.families.evaluation import Comparison, Evaluation, JudgedPart, MetricAbove
from training.families.run import EVALUATION_FILE, VERDICT_FILE, read_outcome, train_unit


class _Constant:
    """A family whose 'model' is one number: enough to exercise the driver."""

    name: ClassVar[str] = "constant"
    artifact_format: ClassVar[str] = "retrain-console/constant/1"

    def inputs(self, params: Mapping[str, Any]) -> tuple[InputNeed, ...]:
        return ()

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"value": float(params.get("value", 1.0))}

    def fit(self, job: FitJob, on_progress: Any) -> float:
        on_progress(Progress(job.unit, 1, 1))
        return float(job.params.get("value", 1.0))

    def evaluate(self, fitted: float, job: FitJob) -> Evaluation:
        return Evaluation(self.name, job.unit, JudgedPart("test", 100), {"score": fitted}, {"zero": {"score": 0.0}},
                          (Comparison("zero", "score", fitted, 0.0, 0.01, "exact"),))

    def rules(self, params: Mapping[str, Any]) -> tuple[MetricAbove, ...]:
        return (MetricAbove("score", 0.5),)

    def save(self, fitted: float, folder: Path) -> tuple[str, ...]:
        from training.families.artifacts import save_arrays

        save_arrays(folder / "weights.npz", {"value": np.array([fitted])})
        return ("weights.npz",)

    def load(self, folder: Path) -> float:
        from training.families.artifacts import load_arrays

        return float(load_arrays(folder / "weights.npz")["value"][0])

    def predictor(self, folder: Path) -> Any:  # pragma: no cover - not used here
        raise NotImplementedError

    def baseline(self, folder: Path | None) -> Any:  # pragma: no cover
        raise NotImplementedError

    def synthetic_job(self, root: Path, *, skill: bool, seed: int = 0) -> FitJob:  # pragma: no cover
        raise NotImplementedError


@pytest.fixture()
def constant_family(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAMILIES, "constant", f"{__name__}:_Constant")


def _job(tmp_path: Path, value: float) -> FitJob:
    return FitJob("constant", "BTC-USD", {}, tmp_path / "work", params={"value": value})


def test_a_passing_unit_is_published_whole_and_promoted(tmp_path: Path, constant_family: None) -> None:
    outcome = train_unit(_job(tmp_path, 0.9), tmp_path / "out")
    folder = outcome.published.folder
    assert outcome.verdict.passed and outcome.published.promoted
    assert registry.verify_folder(folder) == []
    assert {"weights.npz", EVALUATION_FILE, VERDICT_FILE, "sha256.txt"} <= {p.name for p in folder.iterdir()}
    pointer = registry.champion(tmp_path / "out", "BTC-USD")
    assert pointer is not None and pointer["manifest_sha256"] and pointer["model_sha256"] is None
    assert read_outcome(folder)["verdict"]["passed"] is True


def test_a_failing_unit_is_kept_but_never_promoted(tmp_path: Path, constant_family: None) -> None:
    outcome = train_unit(_job(tmp_path, 0.1), tmp_path / "out")
    assert not outcome.verdict.passed and not outcome.published.promoted
    assert registry.champion(tmp_path / "out", "BTC-USD") is None
    assert any("score above floor" in r for r in outcome.verdict.reasons)


def test_model_names_as_units_are_accepted_but_paths_are_not() -> None:
    assert registry.check_unit("regime") == "regime"
    for bad in ("../x", "Regime", "a/b", ""):
        with pytest.raises(Exception):
            registry.check_unit(bad)
