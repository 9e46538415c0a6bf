"""What the cost ledger's own tables in the state store share: writing a row, reading a run's or a
period's rows, and drawing them as a Rich table. `console.training_jobs` (SageMaker jobs) and
`console.batch_ledger` (AWS Batch jobs) each keep their own columns and figures; this is the part
that is the same for both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from console.state import StateStore


def execute(store: StateStore, sql: str, args: tuple[Any, ...]) -> None:
    """One statement in the store's own transaction (the ledger's tables belong to their modules)."""
    with store._tx() as conn:  # noqa: SLF001 - the store's own transaction, for a table of a ledger module's
        conn.execute(sql, args)


def ledger_rows(store: StateStore, table: str, *, run_id: str | None, since: float | None) -> list[sqlite3.Row]:
    """``table``'s rows, oldest first: only ``run_id``'s if given, only those live or ended at or after
    ``since`` if given."""
    sql, args = f"SELECT * FROM {table} WHERE 1 = 1", list[Any]()
    if run_id is not None:
        sql += " AND run_id = ?"
        args.append(run_id)
    if since is not None:
        sql += " AND (ended_at IS NULL OR ended_at >= ?)"
        args.append(since)
    return store._query(sql + " ORDER BY created_at", tuple(args))  # noqa: SLF001


def rich_table(title: str, columns: Iterable[str], numeric: Callable[[str], bool]) -> Any:
    """An empty Rich table titled ``title`` with ``columns``, the ``numeric`` ones right-justified."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if numeric(col) else "left")
    return table
