"""Run one family's job end to end on a training host: fit, judge, save, publish, promote.

This is what every entry point calls (the SSH host's scheduler jobs, the container's
SageMaker and Batch modes), so a family trains the same way wherever it runs::

    family = get_family(job.family)
    params = family.check_params(job.params)
    fitted = family.fit(job, on_progress)          # resumes from job.work_dir
    evaluation = family.evaluate(fitted, job)      # out of sample, after costs, baselines, p-values
    verdict = judge(evaluation, family.rules(params))
    models/<UNIT>/<stamp>/ <- family.save(...) + evaluation.json + verdict.json + sha256.txt
    champions/<UNIT>.json and roster.json <- only when the verdict passed

The published folder is complete or absent (`training.registry.publish_folder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from training import registry
from training.families import get_family
from training.families.artifacts import save_json
from training.families.base import FitJob, Progress
from training.families.evaluation import Evaluation, Verdict, judge

EVALUATION_FILE = "evaluation.json"
VERDICT_FILE = "verdict.json"


@dataclass(frozen=True)
class UnitOutcome:
    """What one trained unit came to."""

    published: registry.PublishedModel
    evaluation: Evaluation
    verdict: Verdict


def train_unit(
    job: FitJob, out: Path, *, on_progress: Callable[[Progress], None] = lambda p: None, pin: str = ""
) -> UnitOutcome:
    """Train, judge and publish ``job`` under the artifact root ``out``; promote when it passes.

    ``pin`` is what the champion pointer records as the model's input fingerprint (the
    feature hash, the shared encoder's hash).
    """
    family = get_family(job.family)
    params = family.check_params(job.params)
    fitted = family.fit(job, on_progress)
    evaluation = family.evaluate(fitted, job)
    verdict = judge(evaluation, family.rules(params))

    def write(folder: Path) -> Sequence[str]:
        names = list(family.save(fitted, folder))
        save_json(folder / EVALUATION_FILE, evaluation.to_dict())
        save_json(
            folder / VERDICT_FILE,
            {
                "passed": verdict.passed,
                "lines": list(verdict.lines()),
                "family": family.name,
                "format": family.artifact_format,
            },
        )
        return [*names, EVALUATION_FILE, VERDICT_FILE]

    published = registry.publish_folder(out, job.unit, write, passed=verdict.passed, reasons=verdict.reasons)
    published = registry.promote_if_passed(out, published, feature_hash=pin)
    return UnitOutcome(published, evaluation, verdict)


def read_outcome(folder: Path) -> dict[str, Any]:
    """The evaluation and verdict a published folder carries (for the console and the gate)."""
    from training.families.artifacts import load_json

    return {"evaluation": load_json(Path(folder) / EVALUATION_FILE), "verdict": load_json(Path(folder) / VERDICT_FILE)}
