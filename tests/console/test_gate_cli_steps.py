"""The checklist's `alignment` and `dryrun` steps are the real ones, with the shared params."""

from __future__ import annotations

from console.checklist.step import NotLandedStep, registered_steps
from console.steps.checks import Alignment, Dryrun
from console.steps.params import AlignmentParams, DryrunParams


def test_alignment_and_dryrun_steps_are_registered_with_their_params():
    steps = registered_steps()
    assert steps["alignment"] is Alignment and steps["dryrun"] is Dryrun
    assert not issubclass(Alignment, NotLandedStep) and not issubclass(Dryrun, NotLandedStep)
    assert Alignment.Params is AlignmentParams and Dryrun.Params is DryrunParams
    assert not Alignment.retryable and not Dryrun.retryable
