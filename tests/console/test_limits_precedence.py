"""The operator's budget and runtime limits override the checklist's; a stricter checklist limit wins."""

from __future__ import annotations

from console.steps import load_checklist
from tests.console.cli import console


def _launch(spec):
    return spec.steps[spec.index_of("launch")].params


def test_operator_limits_tighten_the_shipped_checklist() -> None:
    spec = load_checklist("retrain", limits={"budget_usd": 0.5, "max_runtime_hours": 1.0})
    assert (_launch(spec).budget_usd, _launch(spec).max_runtime_hours) == (0.5, 1.0)
    # the run records the limits that apply, so the watchdog and a resume see the same ones
    assert (spec.params["budget_usd"], spec.params["max_runtime_hours"]) == (0.5, 1.0)
    assert spec.checklist_limits == {"budget_usd": 10.0, "max_runtime_hours": 4.0}


def test_a_stricter_checklist_limit_wins_over_a_looser_operator_one() -> None:
    spec = load_checklist("retrain", limits={"budget_usd": 500.0, "max_runtime_hours": 2.0})
    assert (_launch(spec).budget_usd, _launch(spec).max_runtime_hours) == (10.0, 2.0)


def test_limits_the_operator_did_not_set_leave_the_checklist_alone() -> None:
    spec = load_checklist("retrain", limits={})
    assert (_launch(spec).budget_usd, _launch(spec).max_runtime_hours) == (10.0, 4.0)


def test_plan_and_config_show_the_operator_limits_that_apply() -> None:
    env = {"RC_BUDGET__RUN_USD": "0.5", "SAGEMAKER_MAX_RUNTIME_HOURS": "1"}
    plan = console("plan", "--checklist", "retrain", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "budget $0.50, at most 1h" in plan.stdout
    assert "budget_usd: 0.5 applies (budget.run_usd = 0.5 (env); checklist 10)" in plan.stdout
    assert "max_runtime_hours: 1 applies (max_runtime_hours = 1 (env); checklist 4)" in plan.stdout
    shown = console("config", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "limits only tighten" in shown.stdout and "budget.run_usd = 0.5 (env)" in shown.stdout
