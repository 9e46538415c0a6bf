"""`console tui` on an empty state: the retrain checklist's plan, started with one key.

Driven through Textual's pilot on a real state store. Starting the shipped retrain
checklist starts the real sandbox (its first step fetches market data from the simulator),
so that test stops the run once its first step is under way and takes the sandbox down; a
small checklist of the operator's own, picked with ``c``, is driven to the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

from console.checklist.engine import Engine
from console.settings import Settings
from console.state import StateStore
from console.steps import load_checklist
from console.tui.app import OperatorApp
from console.tui.modals import ConfirmModal
from console.tui.proposal import ChecklistPicker, checklist_choices, shipped_dir
from console.tui.readings import Reading
from remote.sandbox import lifecycle
from tests.console.test_tui_app import SIZE, click, run, screen_text, until

MINI = f"""
[checklist]
name = "mini"
description = "two quick steps of the operator's own"

[defaults]
retries = 0
timeout_s = 60

[[steps]]
name = "hello"
step = "command"
[steps.params]
argv = ["{sys.executable}", "-c", "print('hello')"]

[[steps]]
name = "pause"
step = "wait"
[steps.params]
seconds = 0.2
"""


def _app(settings: Settings, store: StateStore) -> OperatorApp:
    return OperatorApp(settings, store, run_id=None, readings=lambda: Reading("host", util_pct=1.0), poll_s=0.1)


def test_an_empty_state_shows_the_retrain_plan_and_a_starts_it(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", profile="sandbox")
    store = StateStore.open(settings.state_dir)
    planned = [step.name for step, _ in Engine(settings, store).plan(load_checklist("retrain", profile="sandbox"))]

    async def scenario() -> None:
        app = _app(settings, store)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.proposal is not None, timeout=30, what="the retrain plan")
            await pilot.pause()
            steps = app.query_one("#steps")
            assert [str(steps.get_row(name)[1]) for name in planned] == planned
            assert all("planned" in str(steps.get_row(name)[2]) for name in planned)
            assert "a: start retrain" in screen_text(app, "#why")
            assert "console watchdog start" in screen_text(app, "#header")
            assert "fetch" in screen_text(app, "#plan")  # the selected (first) step's plan
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the confirmation")
            assert app.screen.title_text.startswith("Start retrain")
            await click(pilot, "#confirm")
            await until(pilot, lambda: app.run_id is not None, what="the new run")
            run_id = app.run_id
            await until(
                pilot, lambda: app.snapshot is not None and app.snapshot.steps and
                app.snapshot.steps[0].state in ("running", "succeeded"), timeout=60, what="fetch to start",
            )  # fmt: skip
            assert run_id in screen_text(app, "#header")
            await pilot.press("x")
            await click(pilot, "#confirm")
            await until(pilot, lambda: not app.driving, timeout=60, what="the step to stop")
        record = store.get_run(run_id)
        assert record is not None and record.checklist == "retrain"

    try:
        run(scenario())
    finally:
        lifecycle.down(settings.state_dir)


def test_c_picks_the_operators_own_checklist_and_a_runs_it_to_the_end(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", profile="sandbox")
    store = StateStore.open(settings.state_dir)
    (settings.state_dir / "checklists").mkdir()
    (settings.state_dir / "checklists" / "mini.toml").write_text(MINI)
    (settings.state_dir / "checklists" / "notes.toml").write_text("[other]\nx = 1\n")  # not a checklist
    choices = checklist_choices([settings.state_dir / "checklists"])
    shipped = sorted(p.stem for p in shipped_dir().glob("*.toml"))
    assert [c.name for c in choices] == [*shipped, str(settings.state_dir / "checklists" / "mini.toml")]

    async def scenario() -> None:
        app = _app(settings, store)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.proposal is not None, timeout=30, what="the retrain plan")
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ChecklistPicker), what="the picker")
            await pilot.press(*["down"] * len(shipped), "enter")  # the operator's own come after the shipped
            await until(pilot, lambda: app.proposal is not None and app.proposal.spec.name == "mini", what="mini")
            await pilot.pause()
            assert "a: start mini" in screen_text(app, "#why")
            await pilot.press("a")
            await click(pilot, "#confirm")
            await until(pilot, lambda: app.run_id is not None, what="the new run")
            run_id = app.run_id
            await until(
                pilot, lambda: [s.state for s in store.steps(run_id)] == ["succeeded", "succeeded"] and not app.driving,
                timeout=30, what="both steps to succeed",
            )  # fmt: skip
            await until(pilot, lambda: "succeeded" in str(app.query_one("#steps").get_row("pause")[2]))
            await until(pilot, lambda: app.report_path is not None, timeout=60, what="the run report")
            assert app.report_path.is_file() and run_id in str(app.report_path)
            assert any(f"report: {app.report_path}" in n.message for n in app._notifications)

    run(scenario())
