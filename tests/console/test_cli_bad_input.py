"""Bad input to the spine's commands: one line, exit 2, and no state created or changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.state import StateStore
from tests.console.cli import assert_one_line_error, console

GOOD_STEP = '[[steps]]\nname = "a"\nstep = "wait"\n[steps.params]\nseconds = 0.1\n'

CASES = {
    "toml_syntax": ('[checklist]\nname = "x"\n[[steps]]\nname = = "a"\n', ["TOML syntax error", "line 4", "column"]),
    "unknown_step": ('[[steps]]\nname = "launch-rocket"\n', ["unknown step 'launch-rocket'", "known steps"]),
    "unknown_step_param": ('[[steps]]\nname = "a"\nstep = "wait"\n[steps.params]\nseconds = 1\nsecs = 2\n', ["unknown parameter 'secs'"]),
    "unknown_shared_param": ('[params]\nepoks = 3\n' + GOOD_STEP, ["unknown parameter 'epoks'"]),
    "malformed_symbol": ('[params]\nsymbols = ["BTC-USD", "eth;rm -rf"]\n[[steps]]\nname = "fetch"\n', ["is not a symbol like BTC-USD"]),
    "bad_param_value": ('[[steps]]\nname = "a"\nstep = "wait"\n[steps.params]\nseconds = -1\n', ["parameter 'seconds'"]),
    "duplicate_step": (GOOD_STEP + GOOD_STEP, ["listed twice"]),
    "no_steps": ('[checklist]\nname = "empty"\n', ["no [[steps]]"]),
    "unknown_section": ('[stepz]\n' + GOOD_STEP, ["unknown section 'stepz'"]),
    "negative_timeout": ('[[steps]]\nname = "a"\nstep = "wait"\ntimeout_s = -5\n[steps.params]\nseconds = 1\n', ["timeout_s"]),
}


@pytest.fixture()
def state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    StateStore.open(state).add_event(None, None, "note", "before")
    return state


def snapshot(state: Path) -> dict:
    return StateStore.open(state).snapshot()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_checklist_is_one_line_exit_2_and_changes_nothing(case: str, tmp_path: Path, state: Path) -> None:
    text, needles = CASES[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    before = snapshot(state)
    proc = console("run", "--checklist", str(path), "--state-dir", str(state))
    assert_one_line_error(proc, 2, *needles)
    assert snapshot(state) == before
    assert not (state / "runs").exists()


@pytest.mark.parametrize("args,needle", [
    (["run", "--checklist", "no-such-checklist"], "unknown checklist"),
    (["run", "--checklist", "/nonexistent/dir/c.toml"], "does not exist"),
    (["run", "--checklist", "retrain", "--symbols", "BTC-USD,$(reboot)"], "not a symbol"),
    (["run", "--checklist", "retrain", "--only", "launchh"], "has no step 'launchh'"),
    (["run", "--checklist", "retrain", "--skip", "nope"], "has no step 'nope'"),
    (["run", "--checklist", "retrain", "--profile", "azure"], "unknown profile"),
    (["run"], "Missing option '--checklist'"),
    (["run", "--checklist", "retrain", "--frobnicate"], "No such option"),
    (["resume", "20990101-000000-dead"], "no run '20990101-000000-dead'"),
    (["status", "nope"], "no run 'nope'"),
    (["launch-everything"], "No such command"),
])
def test_bad_command_line_is_one_line_exit_2_and_changes_nothing(args: list[str], needle: str, state: Path) -> None:
    before = snapshot(state)
    assert_one_line_error(console(*args, "--state-dir", str(state)) if args[0] != "launch-everything"
                          else console(*args), 2, needle)
    assert snapshot(state) == before


def test_debug_flag_adds_the_traceback(tmp_path: Path) -> None:
    proc = console("run", "--checklist", "no-such-checklist", "--debug", "--state-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "unknown checklist" in proc.stderr


def test_plan_lists_the_eleven_retrain_steps_and_touches_nothing(tmp_path: Path) -> None:
    proc = console("plan", "--checklist", "retrain", "--state-dir", str(tmp_path / "never"))
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[1] for line in proc.stdout.splitlines()[1:] if line.split()[0].rstrip(".").isdigit()]
    assert names == ["fetch", "features", "verify-counts", "launch", "sync", "train", "upload", "terminate",
                     "download", "alignment", "dryrun"]
    assert not (tmp_path / "never").exists()
