"""Files are replaced whole, and what a killed writer left behind is cleared by the next write."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.atomic import atomic_path, sweep_stale


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]


def test_the_next_write_clears_temporaries_of_dead_writers_only(tmp_path: Path) -> None:
    target = tmp_path / "f.parquet"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".f.parquet.{dead_pid}-abcd.tmp").write_bytes(b"left by a SIGKILL")
    live = tmp_path / f".f.parquet.{1}-beef.tmp"  # pid 1 is alive: a writer still at work
    live.write_bytes(b"in progress")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "f.parquet"]
    assert sweep_stale(target) == []
