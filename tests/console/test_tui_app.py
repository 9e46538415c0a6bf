"""The operator console driven through Textual's pilot: real checklists, a real state store.

Each test builds a small checklist from the built-in `command` and `wait` steps in a
temporary directory, opens the TUI on it with `app.run_test()`, and presses keys as an
operator would. Guarded actions are confirmed and cancelled; every effect is read back
from the state store, not from the screen alone.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from console.checklist.engine import Engine
from console.steps import load_checklist
from console.errors import GuardRefused
from console.settings import Settings
from console.state import StateStore
from console.tui.app import OperatorApp
from console.tui.logpane import LogPane
from console.tui.modals import ConfirmModal, QuitModal, ReasonModal
from console.tui.panes import ChecklistPane
from console.tui.readings import Reading
from tests.console.cli import CONSOLE

SIZE = (120, 36)
PY = sys.executable

CHECKLIST = f"""
[checklist]
name = "tuitest"
description = "a small checklist for the TUI tests"

[defaults]
retries = 0
backoff_s = 0
timeout_s = 60

[[steps]]
name = "hello"
step = "command"
[steps.params]
argv = ["{PY}", "-c", "print('hello from the first step')"]

[[steps]]
name = "pause"
step = "wait"
[steps.params]
seconds = {{pause}}

[[steps]]
name = "boom"
step = "command"
[steps.params]
argv = ["{PY}", "-c", "import sys, pathlib; sys.exit(0 if pathlib.Path('../../fixed').exists() else 3)"]
"""


class Env:
    """A temporary state dir, settings, a store and a checklist file."""

    def __init__(self, tmp_path: Path, pause: float = 0.1, profile: str = "sandbox") -> None:
        self.tmp = tmp_path
        self.settings = Settings(state_dir=tmp_path / "state", profile=profile)
        self.store = StateStore.open(self.settings.state_dir)
        self.checklist = tmp_path / "tuitest.toml"
        self.checklist.write_text(CHECKLIST.replace("{pause}", str(pause)))
        self.terminated: list[str] = []

    def new_run(self) -> str:
        spec = load_checklist(str(self.checklist), profile=self.settings.profile)
        return Engine(self.settings, self.store).create_run(spec)

    def states(self, run_id: str) -> dict[str, str]:
        return {s.name: s.state for s in self.store.steps(run_id)}

    def terminate(self, instance_id: str) -> str:
        """Stands in for the cloud provider: records the termination the way the real command does."""
        self.terminated.append(instance_id)
        self.store.mark_instance_terminated(instance_id, "terminated by the operator")
        return f"{instance_id} terminated"

    def app(self, run_id: str | None, **kwargs: Any) -> OperatorApp:
        kwargs.setdefault("readings", lambda: Reading("host", util_pct=12.0, mem_pct=34.0))
        kwargs.setdefault("terminator", self.terminate)
        kwargs.setdefault("poll_s", 0.1)
        return OperatorApp(self.settings, self.store, run_id=run_id, **kwargs)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def until(pilot: Any, condition: Callable[[], Any], timeout: float = 15.0, what: str = "") -> None:
    """Let the app run until ``condition()`` holds (generous: the CI machine is busy)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.05)


async def click(pilot: Any, selector: str, timeout: float = 15.0) -> None:
    """Click ``selector`` once the screen that shows it is composed (a modal mounts a frame
    after the key that opens it, later still on a busy machine)."""
    await until(pilot, lambda: bool(pilot.app.screen.query(selector)), timeout, what=selector)
    await pilot.click(selector)


async def opened(pilot: Any, app: OperatorApp) -> None:
    await until(pilot, lambda: app.snapshot is not None and app.feed_updates > 0, what="the first feed update")
    await until(pilot, lambda: app.run_id is None or app.spec is not None or app._spec_error, what="the checklist")
    await pilot.pause()


def notes(app: OperatorApp) -> list[str]:
    return [n.message for n in app._notifications]


def screen_text(app: OperatorApp, selector: str) -> str:
    return str(app.query_one(selector).render())


# -- driving a checklist ------------------------------------------------------------------------


def test_run_all_drives_a_real_checklist_to_its_failing_step_and_shows_the_log(env: Env) -> None:
    run_id = env.new_run()

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.press("a")
            assert isinstance(app.screen, ConfirmModal)
            assert "no cloud cost" in screen_text(app.screen, "#modal-body")
            await click(pilot, "#confirm")
            await until(pilot, lambda: env.states(run_id)["boom"] == "failed" and not app.driving, what="the run to stop")
            await until(pilot, lambda: any("hello from the first step" in line for line in app.query_one(LogPane).log_widget.lines))
            await until(pilot, lambda: app.snapshot.steps[2].state == "failed")
            assert any(f"run {run_id} failed at boom" in n for n in notes(app))
            assert "failed" in str(app.query_one("#steps").get_row("boom")[2])

    run(scenario())
    assert env.states(run_id) == {"hello": "succeeded", "pause": "succeeded", "boom": "failed"}


def test_run_next_runs_only_the_first_unfinished_step(env: Env) -> None:
    run_id = env.new_run()

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.press("n")
            assert isinstance(app.screen, ConfirmModal)
            assert "hello" in app.screen.title_text
            await click(pilot, "#confirm")
            await until(pilot, lambda: env.states(run_id)["hello"] == "succeeded" and not app.driving)

    run(scenario())
    assert env.states(run_id) == {"hello": "succeeded", "pause": "pending", "boom": "pending"}


def test_cancelling_a_run_confirmation_runs_nothing(env: Env) -> None:
    run_id = env.new_run()
    before = env.store.snapshot()

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            for key in ("n", "a"):
                await pilot.press(key)
                assert isinstance(app.screen, ConfirmModal)
                await pilot.press("escape")
                assert not isinstance(app.screen, ConfirmModal)
            await pilot.pause(0.3)
            assert not app.driving

    run(scenario())
    assert env.store.snapshot()["steps"] == before["steps"]


def test_retry_asks_first_and_runs_the_failed_step_again(env: Env) -> None:
    run_id = env.new_run()
    Engine(env.settings, env.store).drive(run_id, load_checklist(str(env.checklist)))
    assert env.states(run_id)["boom"] == "failed"

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            app.query_one("#steps").move_cursor(row=2)
            await pilot.press("r")
            assert isinstance(app.screen, ConfirmModal)
            await pilot.press("escape")
            await pilot.pause(0.2)
            assert env.store.get_step(run_id, "boom").attempt == 1
            (env.tmp / "state" / "fixed").touch()  # the operator fixed the cause
            await pilot.press("r")
            await click(pilot, "#confirm")
            await until(pilot, lambda: env.states(run_id)["boom"] == "succeeded" and not app.driving)

    run(scenario())
    assert env.store.get_step(run_id, "boom").attempt == 2


def test_retry_is_refused_with_a_reason_when_the_selected_step_did_not_fail(env: Env) -> None:
    run_id = env.new_run()

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            assert app.check_action("retry", ()) is None  # greyed out in the footer
            await pilot.press("r")
            assert not isinstance(app.screen, ConfirmModal)
            app.action_retry()  # as the command palette would
            await pilot.pause()
            assert "select a failed, blocked or cancelled step to retry" in notes(app)

    run(scenario())


def test_skip_asks_for_a_reason_and_records_it(env: Env) -> None:
    run_id = env.new_run()

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            app.query_one("#steps").move_cursor(row=1)
            await pilot.press("s")
            assert isinstance(app.screen, ReasonModal)
            await pilot.press("escape")
            await pilot.pause(0.2)
            assert env.states(run_id)["pause"] == "pending"
            await pilot.press("s")
            await pilot.press("enter")  # an empty reason is not accepted
            assert isinstance(app.screen, ReasonModal)
            await pilot.press(*"already waited")
            await pilot.press("enter")
            await until(pilot, lambda: env.states(run_id)["pause"] == "skipped" and not app.driving)

    run(scenario())
    step = env.store.get_step(run_id, "pause")
    assert step.summary == "skipped: already waited"
    assert env.states(run_id)["hello"] == "pending"


def test_cancel_step_stops_the_running_step(tmp_path: Path) -> None:
    env = Env(tmp_path, pause=30)
    run_id = env.new_run()

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.press("a")
            await click(pilot, "#confirm")
            await until(pilot, lambda: env.states(run_id)["pause"] == "running")
            await pilot.press("x")
            assert isinstance(app.screen, ConfirmModal)
            await click(pilot, "#confirm")
            await until(pilot, lambda: not app.driving)

    run(scenario())
    assert env.states(run_id)["pause"] == "cancelled"


# -- instances: terminate and quit ---------------------------------------------------------------


def _instance(env: Env, run_id: str) -> str:
    env.store.upsert_instance("i-0abc123", run_id=run_id, provider="ec2", state="running",
                              instance_type="g5.xlarge", zone="us-east-1b", launched_at=time.time() - 3600)
    env.store.add_cost_sample("i-0abc123", run_id, 0.2968, 1.006, "sandbox table")
    return "i-0abc123"


def test_terminate_names_the_cost_and_only_terminates_when_confirmed(env: Env) -> None:
    run_id = env.new_run()
    instance = _instance(env, run_id)

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.press("t")
            assert isinstance(app.screen, ConfirmModal)
            body = screen_text(app.screen, "#modal-body")
            assert instance in body and "$0.31" in body  # an hour at the sandbox rate, plus its disk
            await pilot.press("escape")
            await pilot.pause(0.2)
            assert env.terminated == []
            await pilot.press("t")
            await click(pilot, "#confirm")
            await until(pilot, lambda: f"{instance} terminated" in notes(app))
            await until(pilot, lambda: app.check_action("terminate", ()) is None, what="terminate to grey out")

    run(scenario())
    assert env.terminated == [instance]
    assert env.store.instances(run_id=run_id, active_only=True) == []


def test_a_failed_termination_shows_the_clis_one_line_error(env: Env) -> None:
    run_id = env.new_run()
    _instance(env, run_id)
    error = GuardRefused("cannot terminate i-0abc123: the provider refused", hint="try `console instance list`")

    def refuse(instance_id: str) -> str:
        raise error

    async def scenario() -> None:
        app = env.app(run_id, terminator=refuse)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.press("t")
            await click(pilot, "#confirm")
            await until(pilot, lambda: str(error) in notes(app))

    run(scenario())


@pytest.mark.parametrize("choice, exits, terminated", [("stay", False, []), ("leave", True, []), ("terminate", True, ["i-0abc123"])])
def test_quitting_with_an_instance_running_asks_what_to_do(env: Env, choice: str, exits: bool, terminated: list[str]) -> None:
    run_id = env.new_run()
    _instance(env, run_id)

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.press("q")
            assert isinstance(app.screen, QuitModal)
            await click(pilot, f"#{choice}")
            if exits:
                await until(pilot, lambda: app._exit_renderables is not None or not app.is_running, what="exit")
            else:
                await pilot.pause(0.2)
                assert app.is_running and not isinstance(app.screen, QuitModal)

    run(scenario())
    assert env.terminated == terminated
    if choice == "leave":
        assert env.store.instances(run_id=run_id, active_only=True)  # left to the watchdog


def test_quitting_without_an_instance_just_quits(env: Env) -> None:
    run_id = env.new_run()

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.press("q")
            await pilot.pause(0.2)
            assert not isinstance(app.screen, QuitModal)

    run(scenario())


# -- go live and the gate ------------------------------------------------------------------------


def test_go_live_stays_disabled_without_a_valid_gate_pass(env: Env) -> None:
    run_id = env.new_run()

    def add_gate(passed: bool, expires_in: float) -> None:
        env.store.add_gate(passed=passed, expires_at=time.time() + expires_in, feature_hash="f" * 16,
                           model_hashes={"BTC-USD": "a" * 16}, record={})

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            for make_gate, reason in (
                (None, "no gate record"),
                (lambda: add_gate(False, 3600), "did not pass"),
                (lambda: add_gate(True, -60), "expired"),
                # a pass in the table alone: the gate module finds no signed record by the models
                (lambda: (env.settings.data_root / "models").mkdir(parents=True) or add_gate(True, 3600), "no gate record in"),
            ):
                if make_gate is not None:
                    make_gate()
                    app._feed.want_snapshot = True  # type: ignore[union-attr]
                    await until(pilot, lambda: reason in app.gate.reason, what=reason)
                await pilot.pause()
                assert app.check_action("go_live", ()) is None
                assert reason in screen_text(app, "#why")
                await pilot.press("L")
                assert not isinstance(app.screen, ConfirmModal)
                app.action_go_live()  # from the command palette: refused with the reason
                await pilot.pause()
                assert any(reason in n for n in notes(app))

    run(scenario())
    assert not [e for e in env.store.events(run_id) if e.kind == "live.approved"]


def test_go_live_with_a_gate_pass_asks_first_then_records_the_approval(env: Env) -> None:
    run_id = env.new_run()
    gate_id = env.store.add_gate(passed=True, expires_at=time.time() + 3600, feature_hash="f" * 16,
                                 model_hashes={"BTC-USD": "a" * 16}, record={})

    async def scenario() -> None:
        # The gate module's own verification stands in for a signed record next to real models
        # (tests/runtime_checks cover that record); here it accepts, as it would for one.
        app = env.app(run_id, gate_verifier=lambda: None)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            assert app.check_action("go_live", ()) is True
            await pilot.press("L")
            assert isinstance(app.screen, ConfirmModal)
            assert "real money" in screen_text(app.screen, "#modal-body")
            await pilot.press("escape")
            await pilot.pause(0.1)
            assert not [e for e in env.store.events(run_id) if e.kind == "live.approved"]
            await pilot.press("L")
            await click(pilot, "#confirm")
            await pilot.pause(0.1)

    run(scenario())
    approved = [e for e in env.store.events(run_id) if e.kind == "live.approved"]
    assert [e.data["gate_id"] for e in approved] == [gate_id]


# -- attaching to a headless run ------------------------------------------------------------------


@pytest.mark.slow
def test_attach_follows_a_run_driven_by_a_headless_console_run(tmp_path: Path) -> None:
    env = Env(tmp_path, pause=2.0)
    proc = subprocess.Popen(
        [*CONSOLE, "run", "--checklist", str(env.checklist), "--state-dir", str(env.settings.state_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not env.store.list_runs(1) or env.store.list_runs(1)[0].status != "running":
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the headless run did not start"
            time.sleep(0.05)
        run_id = env.store.list_runs(1)[0].id

        async def scenario() -> None:
            app = env.app(run_id)
            async with app.run_test(size=SIZE) as pilot:
                await opened(pilot, app)
                await until(pilot, lambda: app.snapshot.driven_elsewhere_or_here)
                assert f"driven by pid {proc.pid}" in screen_text(app, "#header")
                assert app.check_action("run_all", ()) is None  # following only
                await until(pilot, lambda: any("hello from the first step" in line for line in app.query_one(LogPane).log_widget.lines))
                await until(pilot, lambda: app.snapshot.steps[2].state == "failed", timeout=30)
                await until(pilot, lambda: not app.snapshot.driven_elsewhere_or_here)
                assert "not being driven" in screen_text(app, "#header")
                assert app.check_action("retry", ()) is None or app.query_one("#steps").cursor_row != 2

        run(scenario())
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert env.states(run_id) == {"hello": "succeeded", "pause": "succeeded", "boom": "failed"}


def test_picking_a_recent_run_follows_it(env: Env) -> None:
    first, second = env.new_run(), env.new_run()

    async def scenario() -> None:
        app = env.app(first)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.press("o")
            await pilot.pause()
            await pilot.press("enter")  # the newest run is first
            await until(pilot, lambda: app.snapshot.run is not None and app.snapshot.run.id == second)
            assert second in screen_text(app, "#header")

    run(scenario())


# -- panes -----------------------------------------------------------------------------------------


def test_log_pane_follows_the_end_until_scrolled_up_then_counts_new_lines(env: Env) -> None:
    async def scenario() -> None:
        app = env.app(None, log_cap=500)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            pane = app.query_one(LogPane)
            pane.add_lines([f"line {i}" for i in range(200)])
            await pilot.pause()
            assert pane.following
            pane.log_widget.scroll_home(animate=False)
            await pilot.pause()
            pane.add_lines([f"more {i}" for i in range(7)])
            await pilot.pause()
            assert "7 new lines" in screen_text(app, "#log-marker")
            await pilot.press("end")
            pane.action_follow()
            await pilot.pause()
            assert not app.query_one("#log-marker").display
            pane.add_lines([f"flood {i}" for i in range(2000)])
            assert pane.log_widget.line_count == 500 and pane.total_lines == 2207
            assert pane.log_widget.lines[-1] == "flood 1999"

    run(scenario())


def test_log_search_jumps_to_matching_lines(env: Env) -> None:
    async def scenario() -> None:
        app = env.app(None)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            pane = app.query_one(LogPane)
            pane.add_lines([f"epoch {i} loss {1 / (i + 1):.3f}" if i % 50 == 0 else f"noise {i}" for i in range(300)])
            pane.log_widget.focus()
            await pilot.press("slash")
            assert app.focused is app.query_one("#log-search")
            await pilot.press(*"EPOCH", "enter")
            await pilot.pause()
            assert "match 6 of 6" in pane.border_subtitle
            await pilot.press("enter")
            assert "match 5 of 6" in pane.border_subtitle
            await pilot.press("escape")
            assert not app.query_one("#log-search").display

    run(scenario())


def test_gpu_pane_shows_the_instances_gpu_or_says_plainly_there_is_none(tmp_path: Path) -> None:
    sandbox = Env(tmp_path / "s")
    aws = Env(tmp_path / "a", profile="aws")

    async def scenario(env: Env, with_reading: bool) -> str:
        run_id = env.new_run()
        _instance(env, run_id)
        if with_reading:
            env.store.add_event(run_id, "train", "metrics.gpu", "gpu", {"util_pct": 87, "mem_used_mib": 12288,
                                                                       "mem_total_mib": 24576, "temp_c": 61, "power_w": 180})
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.pause(0.3)
            return screen_text(app, "#gpu-label")

    assert run(scenario(sandbox, False)) == "sandbox: no GPU on this host: CPU 12%, memory 34%"
    assert run(scenario(aws, False)) == "no reading yet"
    assert run(scenario(aws, True)).startswith("GPU 87%, memory 12.0/24.0 GiB, 61°C, 180 W")


def test_training_view_shows_each_symbols_progress(env: Env) -> None:
    run_id = env.new_run()
    for epoch, loss in enumerate((0.9, 0.7, 0.5), start=1):
        for symbol in ("BTC-USD", "ETH-USD"):
            env.store.add_event(run_id, "train", "train.progress", f"{symbol} epoch {epoch}",
                                {"symbol": symbol, "epoch": epoch, "epochs": 15, "loss": loss, "val_metric": 0.5 + epoch / 100})

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            assert app.training["BTC-USD"].losses == [0.9, 0.7, 0.5]
            labels = [str(w.render()) for w in app.query(".train-label")]
            assert labels == ["BTC-USD ep 3/15 loss 0.500 val 0.530", "ETH-USD ep 3/15 loss 0.500 val 0.530"]

    run(scenario())


def test_command_palette_lists_every_action(env: Env) -> None:
    async def scenario() -> None:
        app = env.app(env.new_run())
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for title in ("Run next step", "Run all steps", "Retry the selected step", "Skip the selected step",
                          "Cancel the running step", "Terminate the instance", "Go live", "Follow a recent run", "Quit"):
                assert title in titles
            assert not any("train" in t.lower() for t in titles)  # training locally is not an action
            await pilot.press("ctrl+p")
            await pilot.pause()
            assert type(app.screen).__name__ == "CommandPalette"

    run(scenario())


# -- the `console tui` command ---------------------------------------------------------------------


def test_tui_command_refuses_an_unknown_run_in_one_line(tmp_path: Path) -> None:
    from tests.console.cli import assert_one_line_error, console

    proc = console("tui", "--attach", "20990101-000000-beef", "--state-dir", str(tmp_path / "state"))
    assert_one_line_error(proc, 2, "no run '20990101-000000-beef'", "console runs")


def test_tui_command_opens_the_checklists_unfinished_run_or_creates_one(env: Env) -> None:
    from console.app import App
    from console.commands.tui import resolve_run

    app = App(state_dir=str(env.settings.state_dir))
    assert resolve_run(app, None, None) is None  # no run yet: the console opens empty
    first = resolve_run(app, None, str(env.checklist))
    assert resolve_run(app, None, str(env.checklist)) == first  # not a second run
    assert [s.state for s in app.store.steps(first)] == ["pending"] * 3  # nothing started
    assert resolve_run(app, first, None) == first
    assert resolve_run(app, None, None) == first


def test_an_engine_error_is_a_notification_with_the_clis_one_line(env: Env) -> None:
    from console.checklist.engine import RunLock, run_dir
    from console.errors import RunLocked

    run_id = env.new_run()

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            # Another driver takes the run between the check and the start (a lock is per open file).
            with RunLock(run_dir(env.settings, run_id), run_id):
                app._start_drive({})
                await until(pilot, lambda: not app.driving and any("already being driven" in n for n in notes(app)))
            expected = str(RunLocked(f"run {run_id} is already being driven by pid {os.getpid()}",
                                     hint="wait for it, or follow it with `console status` / `console tui --attach`"))
            assert expected in notes(app)

    run(scenario())
    assert env.states(run_id) == {"hello": "pending", "pause": "pending", "boom": "pending"}


def test_a_refused_guard_shows_its_reason(tmp_path: Path) -> None:
    from console.checklist.step import Step, StepResult, register

    refusal = GuardRefused("no leased GPU host: training locally is refused", hint="launch an instance first")

    @register
    class GuardedForTuiTest(Step):
        name = "tui-test-guarded"

        def preflight(self, ctx: Any) -> None:
            raise refusal

        def run(self, ctx: Any) -> StepResult:  # pragma: no cover - the guard refuses first
            return StepResult.ok("ran")

    env = Env(tmp_path)
    env.checklist.write_text('[checklist]\nname = "guarded"\n[[steps]]\nname = "guarded"\nstep = "tui-test-guarded"\n')
    run_id = env.new_run()

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.press("n")
            await click(pilot, "#confirm")
            await until(pilot, lambda: env.states(run_id)["guarded"] == "blocked" and not app.driving)
            await until(pilot, lambda: f"run {run_id} blocked at guarded: {refusal}" in notes(app))

    run(scenario())


def test_quitting_while_driving_asks_then_cancels_the_step(tmp_path: Path) -> None:
    env = Env(tmp_path, pause=30)
    run_id = env.new_run()
    started = time.monotonic()

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.press("a")
            await click(pilot, "#confirm")
            await until(pilot, lambda: env.states(run_id)["pause"] == "running")
            await pilot.press("q")
            assert isinstance(app.screen, ConfirmModal)
            assert "quitting cancels it" in screen_text(app.screen, "#modal-body")
            await click(pilot, "#confirm")

    run(scenario())
    assert time.monotonic() - started < 25  # the 30 s wait was cancelled, not waited out
    assert env.states(run_id)["pause"] == "cancelled"
    assert env.store.get_run(run_id).status == "cancelled"  # `console resume` picks it up again


def test_a_new_step_summary_is_drawn_whole_with_every_row_aligned_at_once(env: Env) -> None:
    run_id = env.new_run()

    async def scenario() -> None:
        app = env.app(run_id)
        async with app.run_test(size=SIZE) as pilot:
            await opened(pilot, app)
            await pilot.pause()
            summary = "printed hello, exit 0 after 12 ms"
            env.store.update_step(
                run_id,
                "hello",
                "succeeded",
                message="done",
                attempt=1,
                started_at=time.time() - 5,
                finished_at=time.time(),
                summary=summary,
            )
            steps = env.store.steps(run_id)
            pane = app.query_one(ChecklistPane)
            pane.show(steps, time.time())  # drawn before the table has had an idle moment
            table = pane.table
            lines = [table.render_line(y).text for y in range(len(steps) + 1)]
            assert summary in lines[1], lines
            header_at = lines[0].index("summary")
            assert lines[1].index(summary) == header_at, lines
            assert all(
                line.index(name) == lines[0].index("step") for line, name in zip(lines[1:], ("hello", "pause", "boom"))
            ), lines

    run(scenario())
