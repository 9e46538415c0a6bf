"""`console report`: a run's page from the state store, through the real executable.

A small checklist (a command step) runs with `console run`, so the store holds a real run;
the report of a full retrain run (training curves, out-of-sample figures, equity, the
verdict) is rendered in a browser by tests/test_newcomer_run.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.console.cli import assert_one_line_error, console

CHECKLIST = f"""
[checklist]
name = "tiny"
[[steps]]
name = "hello"
step = "command"
[steps.params]
argv = ["{sys.executable}", "-c", "print('hello')"]
"""


@pytest.fixture
def state(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "tiny.toml").write_text(CHECKLIST)
    return {"RC_STATE_DIR": str(tmp_path / "state"), "RC_WATCHDOG__AUTOSTART": "false", "HOME": str(tmp_path)}


def test_a_run_names_its_report_and_console_report_writes_it_where_asked(tmp_path: Path, state) -> None:
    ran = console("run", "--checklist", str(tmp_path / "tiny.toml"), env=state, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    line = next(line for line in ran.stdout.splitlines() if line.startswith("report: "))
    page = Path(line.removeprefix("report: "))
    assert page.name == "report.html" and page.parent.parent == tmp_path / "state" / "runs"
    text = page.read_text()
    assert "hello" in text and "This checklist has no dry run" in text and "no cloud cost" in text
    assert (page.parent / "report-steps.png").read_bytes().startswith(b"\x89PNG")
    out = tmp_path / "elsewhere" / "mine.html"
    again = console("report", "--out", str(out), env=state, cwd=tmp_path)  # the newest run
    assert again.returncode == 0 and again.stdout.strip() == f"report: {out}"
    assert "data:image/png;base64," in out.read_text() and (out.parent / "mine-steps.png").exists()


def test_report_refuses_an_unknown_run_and_a_page_that_is_not_html(tmp_path: Path, state) -> None:
    assert_one_line_error(console("report", env=state, cwd=tmp_path), 2, "no runs yet")
    assert_one_line_error(console("report", "nope", env=state, cwd=tmp_path), 2, "no run 'nope'")
    assert_one_line_error(console("report", "--out", "x.png", env=state, cwd=tmp_path), 2, "not an .html file")
    assert not list(tmp_path.glob("*.png"))
