"""The state store: one SQLite file (WAL mode) shared by the TUI, the runner and the watchdog.

`store` holds `StateStore` (connections, transactions, reads and writes), `records` the
frozen records it hands out and the `RunStatus` enum, `schema` the versioned migrations.
Everything is importable from here: ``from console.state import StateStore, RunStatus``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from console.state.records import (
    FINISHED,
    EventRecord,
    InstanceRecord,
    RunRecord,
    RunStatus,
    StepRecord,
)
from console.state.schema import DB_NAME, MIGRATIONS, SCHEMA_VERSION
from console.state.store import OUTPUTS_SUPERSEDED, StateStore

__all__ = [
    "DB_NAME",
    "FINISHED",
    "MIGRATIONS",
    "OUTPUTS_SUPERSEDED",
    "SCHEMA_VERSION",
    "EventRecord",
    "InstanceRecord",
    "RunRecord",
    "RunStatus",
    "StateStore",
    "StepRecord",
    "iter_step_logs",
]


def iter_step_logs(run_dir: Path) -> Iterator[Path]:
    """The step log files of a run directory, in step order."""
    yield from sorted(Path(run_dir).glob("*.log"))
