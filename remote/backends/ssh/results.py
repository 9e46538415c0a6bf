"""Reading a finished job's results off the host: the scheduler's summary and each model's figures.

The scheduler writes ``<artifacts>/summary.json`` (one row per unit: state, attempts, last
epoch, model folder, passed, promoted, why); each model folder holds ``metrics.json``
(test metrics of the model and its baselines, after costs). `unit_results` joins them into
one `JobEvent` of kind ``done`` per unit, the figures the operator's table shows.
"""

from __future__ import annotations

import json
from typing import Any

from remote.backends.base import JobEvent
from remote.errors import RemoteError
from remote.ssh import SSHRunner


def read_summary(runner: SSHRunner, artifacts: str) -> dict[str, Any]:
    """``summary.json`` of the scheduler's last run on the host ({} when missing or unreadable)."""
    text = runner.read_text(f"{artifacts}/summary.json")
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics(runner: SSHRunner, artifacts: str, model_dir: str | None) -> dict[str, Any]:
    """A model folder's ``metrics.json`` ({} when it cannot be read: it only thins the table)."""
    if not model_dir:
        return {}
    path = model_dir if model_dir.startswith("/") else f"{artifacts}/{model_dir}"
    for candidate in (f"{path}/metrics.json", f"{artifacts}/{model_dir.split('artifacts/')[-1]}/metrics.json"):
        try:
            text = runner.read_text(candidate)
        except RemoteError:
            text = None
        if text:
            try:
                data = json.loads(text)
            except ValueError:
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def unit_results(job: str, runner: SSHRunner, artifacts: str, summary: dict[str, Any]) -> list[JobEvent]:
    """One ``done`` event per unit of the summary, with its test figures against the baselines."""
    events = []
    for row in summary.get("symbols", []) if summary else []:
        metrics = read_metrics(runner, artifacts, row.get("model_dir"))
        model = metrics.get("model", {})
        base = metrics.get("baselines", {})
        after = model.get("after_cost", {})
        data = {
            "state": row.get("state"),
            "epochs": row.get("last_epoch"),
            "accuracy": model.get("accuracy"),
            "majority": base.get("majority", {}).get("accuracy"),
            "last_move": base.get("last_move", {}).get("accuracy"),
            "auc": model.get("auc"),
            "net_return": after.get("net_return"),
            "promoted": bool(row.get("promoted")),
            "why": row.get("why") or "",
            "model_dir": row.get("model_dir"),
        }
        events.append(JobEvent(job, "done", f"{row['symbol']}: {row.get('state')}", unit=str(row["symbol"]), data=data))
    return events


def failed_units(summary: dict[str, Any]) -> list[str]:
    return [r["symbol"] for r in summary.get("symbols", []) if r.get("state") != "succeeded"] if summary else []


def first_reason(summary: dict[str, Any]) -> str:
    """The first unit's reason for failing, for a one-line message."""
    for row in summary.get("symbols", []) if summary else []:
        if row.get("why"):
            return str(row["why"])
    return "see the step log"
