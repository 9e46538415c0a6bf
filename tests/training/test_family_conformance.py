"""Every registered model family keeps the `ModelFamily` contract (scikit-learn's
check_estimator idea): it fits what there is to learn and passes its own rules, fails them
on noise, saves without pickle, loads what it saved, never runs code from a tampered file,
and offers a baseline for fallback.

A family registered in `training.families.FAMILIES` is tested here with no further change.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from training.errors import TrainingInputError
from training.families import family_names, get_family
from training.families.base import ModelFamily, Predictor, Progress
from training.families.evaluation import Evaluation, judge

pytestmark = pytest.mark.slow


@pytest.fixture(params=family_names())
def family(request: pytest.FixtureRequest) -> ModelFamily:
    return get_family(request.param)


def test_family_learns_real_structure_and_passes_its_rules(family: ModelFamily, tmp_path: Path) -> None:
    assert isinstance(family, ModelFamily)
    job = family.synthetic_job(tmp_path / "job", skill=True, seed=0)
    params = family.check_params(job.params)
    seen: list[Progress] = []
    fitted = family.fit(job, seen.append)
    assert seen, "fit reported no progress"
    evaluation = family.evaluate(fitted, job)
    assert isinstance(evaluation, Evaluation)
    assert evaluation.baselines, "evaluated against no baseline"
    assert evaluation.comparisons, "no paired comparison with a baseline"
    verdict = judge(evaluation, family.rules(params))
    assert verdict.passed, verdict.lines()


def test_family_passes_nothing_on_noise(family: ModelFamily, tmp_path: Path) -> None:
    for seed in (1, 2):
        job = family.synthetic_job(tmp_path / f"noise{seed}", skill=False, seed=seed)
        params = family.check_params(job.params)
        fitted = family.fit(job, lambda p: None)
        verdict = judge(family.evaluate(fitted, job), family.rules(params))
        assert not verdict.passed, verdict.lines()


def test_saved_model_loads_and_predicts_and_a_baseline_stands_by(family: ModelFamily, tmp_path: Path) -> None:
    job = family.synthetic_job(tmp_path / "job", skill=True, seed=0)
    fitted = family.fit(job, lambda p: None)
    folder = tmp_path / "saved"
    folder.mkdir()
    names = family.save(fitted, folder)
    assert names and all((folder / n).is_file() for n in names)
    family.load(folder)
    predictor = family.predictor(folder)
    assert isinstance(predictor, Predictor) and predictor.trained
    baseline = family.baseline(folder)
    assert isinstance(baseline, Predictor) and not baseline.trained
    assert not family.baseline(None).trained


class _Boom:
    def __reduce__(self):  # noqa: D105 - the payload a tampered file would carry
        return (os.system, (f"touch {os.environ['RC_PICKLE_SENTINEL']}",))


def test_a_tampered_model_file_never_runs_code(family: ModelFamily, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    job = family.synthetic_job(tmp_path / "job", skill=True, seed=0)
    fitted = family.fit(job, lambda p: None)
    folder = tmp_path / "saved"
    folder.mkdir()
    names = family.save(fitted, folder)
    sentinel = tmp_path / "code-ran"
    monkeypatch.setenv("RC_PICKLE_SENTINEL", str(sentinel))
    for name in names:
        (folder / name).write_bytes(pickle.dumps(_Boom()))
        try:
            family.load(folder)
        except TrainingInputError:
            pass
        except Exception as exc:  # any refusal is fine; running the payload is not
            assert not sentinel.exists(), f"loading a tampered {name} ran code ({exc})"
        assert not sentinel.exists(), f"loading a tampered {name} ran code"
        family.save(fitted, folder)  # restore before tampering with the next file


def test_the_registry_lists_the_lstm_family() -> None:
    assert "lstm" in family_names()
    assert get_family("lstm").name == "lstm"


def test_unknown_family_is_bad_input() -> None:
    with pytest.raises(TrainingInputError, match="unknown model family"):
        get_family("no-such-family")
