"""The end-of-run summary: every step with its time and result, the tables steps reported,
instances with their fate and cost, and the gate record.

Steps contribute tables through ``StepResult.details["table"]``::

    {"title": "per-symbol metrics", "columns": ["symbol", "acc", ...], "rows": [[...], ...]}
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table

from console.render import output_console
from console.state import StateStore


def run_summary(store: StateStore, run_id: str) -> RenderableType:
    """A renderable summary of the run as the state store has it now."""
    run = store.get_run(run_id)
    steps = store.steps(run_id)
    parts: list[RenderableType] = []
    table = Table(
        title=f"run {run_id} · {run.checklist if run else ''} · {run.status if run else ''}", title_justify="left"
    )
    for col in ("step", "state", "took", "result"):
        table.add_column(col)
    total = 0.0
    for s in steps:
        took = s.elapsed if s.finished_at else None
        total += took or 0.0
        table.add_row(s.name, s.state, f"{took:.1f}s" if took is not None else "", s.summary)
    table.caption = f"steps took {total:.1f}s in all"
    parts.append(table)

    for s in steps:
        spec = s.details.get("table") if isinstance(s.details, dict) else None
        if isinstance(spec, dict) and spec.get("columns"):
            parts.append(_table(spec))

    instances = store.instances(run_id=run_id)
    if instances:
        it = Table(title="instances", title_justify="left")
        for col in ("instance", "type", "zone", "state", "up", "why it ended"):
            it.add_column(col)
        for i in instances:
            end = i.terminated_at or time.time()
            up = f"{(end - i.launched_at) / 60:.1f} min" if i.launched_at else ""
            it.add_row(i.id, i.instance_type, i.zone, i.state, up, i.terminate_reason)
        parts.append(it)
    return Group(*parts)


def _table(spec: dict[str, Any]) -> Table:
    table = Table(title=str(spec.get("title", "")), title_justify="left")
    for col in spec["columns"]:
        table.add_column(str(col))
    for row in spec.get("rows", []):
        table.add_row(*(_cell(v) for v in row))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def print_summary(store: StateStore, run_id: str, console: Console | None = None) -> None:
    (console or output_console()).print(run_summary(store, run_id))
