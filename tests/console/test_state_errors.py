"""State database errors say what is wrong (damaged, disk full, read-only) with the right advice,
(a damaged one: tests/console/test_state.py), and an error that ends a drive ends the run: never "running" with nothing driving it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from console.checklist.engine import Engine
from console.errors import StateError
from console.settings import load_settings
from console.state import StateStore
from console.state.errors import StateDiskFull
from console.steps import load_checklist


def test_a_full_disk_is_a_failure_of_the_machine_not_a_damaged_database(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    pages = store._conn().execute("PRAGMA page_count").fetchone()[0]
    store._conn().execute(f"PRAGMA max_page_count = {pages}")  # real SQLite, out of room
    with pytest.raises(StateDiskFull) as caught:
        store.add_event(None, None, "note", "x" * 200_000)
    assert caught.value.exit_code == 1
    assert "disk is full" in str(caught.value) and "move it aside" not in str(caught.value)


def test_a_read_only_database_says_so_and_is_not_called_damaged(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    store._local.conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(StateError) as caught:
        store.add_event(None, None, "note", "hello")
    assert caught.value.exit_code == 2
    assert "read-only" in str(caught.value) and "move it aside" not in str(caught.value)


def test_an_error_that_ends_the_drive_ends_the_run_failed(tmp_path: Path) -> None:
    settings = load_settings(flags={"state_dir": str(tmp_path / "state")}).settings
    store = StateStore.open(settings.state_dir)
    wait = '[[steps]]\nname = "{}"\nstep = "wait"\n[steps.params]\nseconds = 0.01\n'
    first = tmp_path / "c.toml"
    first.write_text('[checklist]\nname = "c"\n' + wait.format("a"))
    engine = Engine(settings, store)
    run_id = engine.create_run(load_checklist(str(first)))
    first.write_text('[checklist]\nname = "c"\n' + wait.format("a") + wait.format("b"))  # edited since
    with pytest.raises(StateError, match="checklist changed"):
        engine.drive(run_id, load_checklist(str(first)))
    run = store.get_run(run_id)
    assert run is not None and run.status == "failed" and "the console stopped" in run.summary
