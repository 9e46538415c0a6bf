"""The state store: WAL, migrations, refusing corrupt or newer databases, several processes at once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from console.errors import StateError
from console.state import SCHEMA_VERSION, StateStore
from tests.console.cli import assert_one_line_error, console


def test_store_uses_wal_and_records_its_schema_version(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    assert store.schema_version() == SCHEMA_VERSION
    mode = sqlite3.connect(tmp_path / "state.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    tables = {r[0] for r in sqlite3.connect(tmp_path / "state.db").execute("SELECT name FROM sqlite_master")}
    assert {"runs", "steps", "events", "instances", "costs", "gates"} <= tables


def test_reopening_does_not_migrate_again_or_lose_rows(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    store.add_event(None, None, "note", "kept")
    again = StateStore.open(tmp_path)
    assert [e.message for e in again.events()] == ["kept"]


def test_database_from_a_newer_console_is_refused_untouched(tmp_path: Path) -> None:
    StateStore.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 5,))
    conn.commit()
    conn.close()
    before = (tmp_path / "state.db").read_bytes()
    with pytest.raises(StateError, match="newer"):
        StateStore.open(tmp_path)
    assert (tmp_path / "state.db").read_bytes() == before


def test_corrupt_database_is_refused_with_one_line_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"this is not sqlite at all" * 100)
    before = db.read_bytes()
    line = assert_one_line_error(console("runs", "--state-dir", str(tmp_path)), 2, "unreadable")
    assert "move it aside" in line
    assert db.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; permissions cannot be tested as root")
def test_read_only_state_dir_is_refused(tmp_path: Path) -> None:  # pragma: no cover - non-root only
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert_one_line_error(console("runs", "--state-dir", str(ro)), 2, "not writable")


def test_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(console("runs", "--state-dir", str(blocker / "state")), 2, "cannot create state dir")


def test_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    StateStore.open(tmp_path)
    code = (
        "import sys; from console.state import StateStore\n"
        "s = StateStore.open(sys.argv[1])\n"
        "for i in range(200): s.add_event(None, None, 'w', sys.argv[2] + str(i))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), f"p{n}-"]) for n in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    messages = {e.message for e in StateStore.open(tmp_path).events()}
    assert len(messages) == 600


def test_superseding_a_finished_steps_outputs_keeps_its_state_and_logs_no_transition(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    store.create_run("r1", checklist="retrain", checklist_path="retrain.toml", profile="sandbox", params={},
                     steps=[("launch", "launch", "launch one instance")])
    store.update_step("r1", "launch", "succeeded", message="launched i-1", finished_at=100.0,
                      summary="launched i-1", outputs={"instance_id": "i-1"})
    store.supersede_step_outputs("r1", "launch", outputs={"instance_id": "i-2"}, message="i-2 replaces i-1",
                                 summary="launched i-2; replaces i-1")
    step = store.get_step("r1", "launch")
    assert (step.state, step.finished_at, step.outputs, step.summary) == (
        "succeeded", 100.0, {"instance_id": "i-2"}, "launched i-2; replaces i-1")
    kinds = [e.kind for e in store.events("r1") if e.step == "launch"]
    assert kinds == ["step.succeeded", "outputs.superseded"]
