"""The checklist engine: state machine, retries, timeouts, selection, resume after kill -9, locking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console.checklist.engine import Engine, EngineEvent, RunLock, run_dir
from console.errors import RunLocked
from console.settings import load_settings
from console.state import StateStore
from console.steps import load_checklist
from tests.console.cli import CONSOLE, console

PY = sys.executable


def write_checklist(path: Path, steps: str, defaults: str = "retries = 0\nbackoff_s = 0.1\ntimeout_s = 60") -> Path:
    path.write_text(f'[checklist]\nname = "{path.stem}"\n[defaults]\n{defaults}\n{steps}')
    return path


def command_step(name: str, code: str, extra: str = "") -> str:
    return f'[[steps]]\nname = "{name}"\nstep = "command"\n{extra}\n[steps.params]\nargv = {json.dumps([PY, "-c", code])}\n'


def counter(marker: Path) -> str:
    """Python code that appends a line to ``marker`` (to count how often a step ran)."""
    return f"open({str(marker)!r}, 'a').write('x\\n')"


@pytest.fixture()
def engine(tmp_path: Path):
    settings = load_settings(flags={"state_dir": str(tmp_path / "state")}).settings
    store = StateStore.open(settings.state_dir)
    events: list[EngineEvent] = []
    return Engine(settings, store, listener=events.append), events


def test_steps_run_in_order_and_every_transition_is_an_event(tmp_path: Path, engine) -> None:
    eng, events = engine
    marker = tmp_path / "m"
    path = write_checklist(
        tmp_path / "c.toml", command_step("one", counter(marker)) + command_step("two", counter(marker))
    )
    spec = load_checklist(str(path))
    run_id = eng.create_run(spec)
    outcome = eng.drive(run_id, spec)
    assert outcome.status == "succeeded" and outcome.exit_code == 0
    assert [s.state for s in eng.store.steps(run_id)] == ["succeeded", "succeeded"]
    kinds = [e.kind for e in eng.store.events(run_id)]
    assert kinds.index("step.running") < kinds.index("step.succeeded")
    assert kinds.count("step.running") == 2 and kinds[-1] == "run.succeeded"
    assert marker.read_text() == "x\nx\n"
    logs = sorted(p.name for p in run_dir(eng.settings, run_id).glob("*.log"))
    assert logs == ["01-one.log", "02-two.log"]


def test_failed_step_is_retried_with_backoff_then_succeeds(tmp_path: Path, engine) -> None:
    eng, events = engine
    flag = tmp_path / "flag"
    flaky = f"import os,sys\nif not os.path.exists({str(flag)!r}):\n open({str(flag)!r},'w'); sys.exit(1)"
    path = write_checklist(tmp_path / "c.toml", command_step("flaky", flaky, "retries = 2\nbackoff_s = 0.05"))
    spec = load_checklist(str(path))
    run_id = eng.create_run(spec)
    assert eng.drive(run_id, spec).status == "succeeded"
    step = eng.store.get_step(run_id, "flaky")
    assert step.attempt == 2 and step.state == "succeeded"
    assert any(e.kind == "retry" for e in events)


def test_step_past_its_timeout_fails_and_its_process_is_killed(tmp_path: Path, engine) -> None:
    eng, _ = engine
    path = write_checklist(tmp_path / "c.toml", command_step("slow", "import time; time.sleep(60)", "timeout_s = 1"))
    spec = load_checklist(str(path))
    run_id = eng.create_run(spec)
    started = time.monotonic()
    outcome = eng.drive(run_id, spec)
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert "timed out after 1s" in outcome.message
    assert time.monotonic() - started < 15


def test_run_stops_at_the_first_failure_and_later_steps_stay_pending(tmp_path: Path, engine) -> None:
    eng, _ = engine
    path = write_checklist(
        tmp_path / "c.toml", command_step("bad", "raise SystemExit(3)") + command_step("after", "pass")
    )
    spec = load_checklist(str(path))
    run_id = eng.create_run(spec)
    assert eng.drive(run_id, spec).failed_step == "bad"
    assert [s.state for s in eng.store.steps(run_id)] == ["failed", "pending"]


def test_unlanded_step_ends_blocked_never_succeeded(tmp_path: Path, engine) -> None:
    from console.checklist.step import not_landed

    not_landed("test-unlanded")
    eng, _ = engine
    steps = '[[steps]]\nname = "future"\nstep = "test-unlanded"\n' + command_step("after", "pass")
    spec = load_checklist(str(write_checklist(tmp_path / "c.toml", steps)))
    run_id = eng.create_run(spec)
    outcome = eng.drive(run_id, spec)
    assert outcome.status == "blocked" and outcome.exit_code == 3
    assert [(s.state, s.summary) for s in eng.store.steps(run_id)] == [
        ("blocked", "test-unlanded: not implemented yet"),
        ("pending", ""),
    ]


def test_from_only_and_skip_select_steps_and_record_skip_reasons(tmp_path: Path, engine) -> None:
    eng, _ = engine
    steps = "".join(command_step(n, "pass") for n in ("a", "b", "c", "d"))
    spec = load_checklist(str(write_checklist(tmp_path / "c.toml", steps)))
    run_id = eng.create_run(spec)
    eng.drive(run_id, spec, from_step="b", skip={"c": "data already fresh"})
    states = {s.name: (s.state, s.summary) for s in eng.store.steps(run_id)}
    assert states["a"] == ("skipped", "skipped: --from b")
    assert states["b"][0] == "succeeded" and states["d"][0] == "succeeded"
    assert states["c"] == ("skipped", "skipped: data already fresh")

    run2 = eng.create_run(spec)
    assert eng.drive(run2, spec, only="c").status == "paused"
    assert [s.state for s in eng.store.steps(run2)] == ["pending", "pending", "succeeded", "pending"]


def test_second_driver_of_the_same_run_is_refused(tmp_path: Path, engine) -> None:
    eng, _ = engine
    spec = load_checklist(str(write_checklist(tmp_path / "c.toml", command_step("a", "pass"))))
    run_id = eng.create_run(spec)
    with RunLock(run_dir(eng.settings, run_id), run_id):
        with pytest.raises(RunLocked, match="already being driven"):
            eng.drive(run_id, spec)
    assert eng.store.get_step(run_id, "a").state == "pending"


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _run_and_kill_runner(tmp_path: Path, steps: str) -> tuple[Path, StateStore, str]:
    """`console run` in a session of its own, SIGKILLed (its whole group) once the step runs."""
    state = tmp_path / "state"
    path = write_checklist(tmp_path / "c.toml", steps)
    env = {**os.environ, "RC_STATE_DIR": str(state), "COLUMNS": "200"}
    proc = subprocess.Popen(
        [*CONSOLE, "run", "--checklist", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    _wait_for((tmp_path / "started").exists)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    store = StateStore.open(state)
    return state, store, store.list_runs(1)[0].id


def _slow(marker: Path, started: Path, seconds: float) -> str:
    """Count a run in ``marker``, say it started, then take ``seconds`` (the first time only)."""
    return (f"{counter(marker)}\nimport pathlib, time\npathlib.Path({str(started)!r}).touch()\n"
            f"if pathlib.Path({str(marker)!r}).read_text().count('x') == 1: time.sleep({seconds})")  # fmt: skip


@pytest.mark.slow
def test_killed_runner_resumes_from_the_unfinished_step_without_running_any_command_twice(tmp_path: Path) -> None:
    first, second, third = tmp_path / "first", tmp_path / "second", tmp_path / "third"
    steps = (command_step("first", counter(first)) + command_step("second", _slow(second, tmp_path / "started", 2))
             + command_step("third", counter(third)))  # fmt: skip
    state, store, run_id = _run_and_kill_runner(tmp_path, steps)
    assert [s.state for s in store.steps(run_id)] == ["succeeded", "running", "pending"]

    # The command outlived its console (its watcher is in a session of its own): the resumed
    # run waits for it and takes its exit status instead of starting it again.
    resumed = console("resume", run_id, env={"RC_STATE_DIR": str(state)})
    assert resumed.returncode == 0, resumed.stderr
    assert [s.state for s in store.steps(run_id)] == ["succeeded", "succeeded", "succeeded"]
    assert first.read_text() == "x\n" and second.read_text() == "x\n" and third.read_text() == "x\n"
    assert store.get_step(run_id, "second").attempt == 2
    log = next((state / "runs" / run_id).glob("*-second.log")).read_text()
    assert "still running" in log or "finished meanwhile" in log


@pytest.mark.slow
@pytest.mark.parametrize("idempotent", [False, True])
def test_a_command_whose_outcome_is_lost_runs_again_only_when_idempotent(tmp_path: Path, idempotent: bool) -> None:
    marker = tmp_path / "ran"
    extra = "[steps.params]\nidempotent = true\n" if idempotent else ""
    step = command_step("once", _slow(marker, tmp_path / "started", 30))
    if idempotent:
        step = step.replace("[steps.params]\n", extra)
    state, store, run_id = _run_and_kill_runner(tmp_path, step)
    record = json.loads((state / "runs" / run_id / ".command-once.json").read_text())
    os.killpg(record["pgid"], signal.SIGKILL)  # the watcher and the command too: the outcome is lost
    time.sleep(0.5)

    resumed = console("resume", run_id, env={"RC_STATE_DIR": str(state)}, timeout=120)
    step_record = store.get_step(run_id, "once")
    if idempotent:
        assert resumed.returncode == 0, resumed.stderr
        assert step_record.state == "succeeded" and marker.read_text() == "x\nx\n"
    else:
        assert resumed.returncode != 0
        assert step_record.state == "blocked" and "outcome is lost" in step_record.summary
        assert marker.read_text() == "x\n"  # not run a second time behind the operator's back


@pytest.mark.slow
def test_two_processes_racing_for_one_run_never_both_drive_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    marker = tmp_path / "m"
    code = f"{counter(marker)}\nimport time; time.sleep(2)"
    path = write_checklist(tmp_path / "c.toml", command_step("only", code))
    created = console("run", "--checklist", str(path), "--only", "nonexistent", env={"RC_STATE_DIR": str(state)})
    assert created.returncode == 2  # unknown step name: nothing created
    assert not (state / "runs").exists() or not any((state / "runs").iterdir())

    env = {**os.environ, "RC_STATE_DIR": str(state), "COLUMNS": "200"}
    store = StateStore.open(state)
    settings = load_settings(flags={"state_dir": str(state)}).settings
    spec = load_checklist(str(path))
    run_id = Engine(settings, store).create_run(spec)
    racers = [
        subprocess.Popen(
            [*CONSOLE, "resume", run_id], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in racers]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    assert any("already being driven" in err for _, err in results)
    assert marker.read_text() == "x\n"


def test_ctrl_c_cancels_the_step_records_it_and_exits_130(tmp_path: Path) -> None:
    state = tmp_path / "state"
    started = tmp_path / "started"
    code = f"open({str(started)!r},'w')\nimport time; time.sleep(60)"
    path = write_checklist(tmp_path / "c.toml", command_step("long", code))
    env = {**os.environ, "RC_STATE_DIR": str(state), "COLUMNS": "200"}
    # Started as a terminal's shell starts it, with Ctrl-C's signal at its default: a test
    # run launched in the background inherits SIGINT ignored, and so would the console.
    proc = subprocess.Popen(
        [*CONSOLE, "run", "--checklist", str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for(started.exists)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    assert "nothing launched by this run is still running" in err
    store = StateStore.open(state)
    run = store.list_runs(1)[0]
    assert store.steps(run.id)[0].state == "cancelled" and run.status == "cancelled"


def test_json_output_is_one_event_per_line(tmp_path: Path) -> None:
    path = write_checklist(tmp_path / "c.toml", command_step("a", "print('hello')"))
    proc = console("run", "--checklist", str(path), "--json", env={"RC_STATE_DIR": str(tmp_path / "s")})
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["kind"] for e in events]
    assert "step.running" in kinds and "step.succeeded" in kinds and kinds[-1] == "run.succeeded"
    assert any(e["kind"] == "log" and e["message"] == "hello" for e in events)
