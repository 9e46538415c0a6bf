"""The numbers the panes show, computed from state-store records. No Textual here.

Every function takes the current time as an argument (the app injects its clock), so
the same records always give the same figures: that is what keeps the screen snapshots
stable and the figures testable without a terminal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from console.cost import InstanceCost, instance_cost, projected_cost, run_budget_usd, step_remaining_s
from console.state import EventRecord, StateStore

if TYPE_CHECKING:
    from console.settings import Settings

TRAINING_EVENT_KINDS = ("train.progress", "train.epoch", "train.job", "train.report")
"""Events the per-symbol training view reads.

The train step is expected to emit, once per finished epoch and symbol::

    ctx.emit("train.progress", "BTC-USD epoch 3/15 loss 0.412",
             symbol="BTC-USD", epoch=3, epochs=15, loss=0.412, val_metric=0.55)

``epochs`` and ``val_metric`` are optional; ``train.epoch`` is accepted as a synonym
(it is what `training/train.py` calls its JSON line, ``{"event": "epoch", ...}``). A deep-Q
agent's progress carries ``reward`` (its episode's reward; the epoch is the episode), and
its report step announces the page as ``train.report`` (symbol, path, passed).
"""

WATCHDOG_EVENT_PREFIX = "watchdog."
"""Any event whose kind starts with this counts as a sign of life from the watchdog."""

GPU_EVENT_KINDS = ("host.reading", "metrics.gpu", "gpu.reading")
"""Events carrying a reading of the instance (``host.reading`` is what the watchdog reads).

Data: ``kind`` ("gpu" or "cpu"; gpu when absent), ``util_pct`` or ``gpu_util_pct``,
``mem_used_mib``, ``mem_total_mib``, ``temp_c``, ``power_w``, ``cpu_pct`` (any may be
missing; a missing figure is shown as unknown, never guessed)."""


# -- time ---------------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h04m``; empty for None."""
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def step_elapsed(started_at: float | None, finished_at: float | None, now: float) -> float | None:
    """Seconds a step has run (until it finished, or until ``now`` while it runs)."""
    if started_at is None:
        return None
    return max(0.0, (finished_at if finished_at is not None else now) - started_at)


# -- cost ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostFigures:
    """What the cost pane shows for a run: its newest live instance (else its last) and the run's total."""

    line: InstanceCost
    """The shown instance's ledger line (`console.cost`: spot plus storage, per-second billing)."""
    state: str
    projected_usd: float
    """Its cost if it runs until the running step's timeout at the current rate."""
    run_total_usd: float
    """Every instance of the run together."""
    budget_usd: float
    sandbox: bool
    """True when the prices are the sandbox table's figures, not real ones."""

    @property
    def budget_fraction(self) -> float:
        return self.run_total_usd / self.budget_usd if self.budget_usd > 0 else 0.0


def run_cost_figures(store: StateStore, settings: Settings, run_id: str, *, now: float) -> CostFigures | None:
    """The cost pane's figures for ``run_id`` at ``now`` from the cost ledger; None with no instance.

    Reads the store (call it off the UI thread).
    """
    records = store.instances(run_id=run_id)
    if not records:
        return None
    lines = [instance_cost(store, r, now=now) for r in records]
    live = [
        (r, line)
        for r, line in zip(records, lines, strict=True)
        if line.live and r.state not in ("terminated", "shutting-down")
    ]
    record, line = (live or list(zip(records, lines, strict=True)))[-1]
    sandbox = settings.is_sandbox or record.provider == "sandbox" or "sandbox" in line.source
    return CostFigures(
        line=line,
        state=record.state,
        projected_usd=projected_cost(line, step_remaining_s(store, run_id, now=now)),
        run_total_usd=sum(item.cost_usd for item in lines),
        budget_usd=run_budget_usd(store, run_id, settings),
        sandbox=sandbox,
    )


# -- gate -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateStatus:
    """Whether going live is allowed now, and if not, why (one line for the footer)."""

    passed: bool
    reason: str
    gate_id: int | None = None


def gate_status(row: Mapping[str, Any] | None, *, now: float, refusal: str | None = None) -> GateStatus:
    """Read the latest gate record; no record, a failed one or an expired one is not a pass.

    ``refusal`` is the gate module's own verdict when it refused (changed model files, a
    tampered record): it has the last word.
    """
    if row is None:
        return GateStatus(False, "no gate record: the dry run must pass first")
    gate_id = int(row["id"])
    if not row["passed"]:
        return GateStatus(False, f"the last gate (#{gate_id}) did not pass: fix it and run the dry run again", gate_id)
    if float(row["expires_at"]) <= now:
        ago = format_duration(now - float(row["expires_at"]))
        return GateStatus(False, f"the gate pass #{gate_id} expired {ago} ago: run the dry run again", gate_id)
    if refusal:
        return GateStatus(False, refusal, gate_id)
    left = format_duration(float(row["expires_at"]) - now)
    return GateStatus(True, f"gate #{gate_id} passed (valid {left} more)", gate_id)


# -- watchdog -------------------------------------------------------------------------------


def watchdog_label(
    running: bool | None,
    last_pass_at: float | None,
    *,
    now: float,
    interval_s: float,
    last_event_at: float | None = None,
) -> str:
    """``watchdog: ok (last pass 4s ago)``, ``watchdog: NOT RUNNING``, ...

    ``running`` None means its status could not be read; then its events are the only sign.
    """
    if running is False:
        return "watchdog: NOT RUNNING"
    seen = last_pass_at if running else last_event_at
    if seen is None:
        return "watchdog: running, no pass yet" if running else "watchdog: not seen"
    age = max(0.0, now - seen)
    if age <= 3 * interval_s:
        return f"watchdog: ok (last pass {format_duration(age)} ago)"
    return f"watchdog: silent for {format_duration(age)}"


# -- training -------------------------------------------------------------------------------


@dataclass
class SymbolTraining:
    """Progress of one symbol's training, from its training events."""

    symbol: str
    epoch: int = 0
    epochs: int | None = None
    loss: float | None = None
    val_metric: float | None = None
    losses: list[float] = field(default_factory=list)
    job_state: str = ""
    """A managed job's state (SageMaker's secondary status: Starting, Training, Interrupted...)."""
    reward: float | None = None
    """A deep-Q agent's last episode reward (its epochs are episodes)."""
    rewards: list[float] = field(default_factory=list)
    report: str = ""
    """The agent's report page, once written."""
    passed: bool | None = None


def fold_training(progress: dict[str, SymbolTraining], events: Iterable[EventRecord]) -> bool:
    """Fold training events into ``progress`` (by symbol); True if anything changed."""
    changed = False
    for event in events:
        if event.kind not in TRAINING_EVENT_KINDS:
            continue
        symbol = str(event.data.get("symbol") or "")
        if not symbol:
            continue
        row = progress.setdefault(symbol, SymbolTraining(symbol))
        if event.kind == "train.job":
            row.job_state = str(event.data.get("state") or "")
            changed = True
            continue
        if event.kind == "train.report":
            row.report = str(event.data.get("path") or "")
            row.passed = bool(event.data.get("passed"))
            changed = True
            continue
        row.epoch = _int(event.data.get("epoch"), row.epoch)
        row.epochs = _int(event.data.get("epochs"), row.epochs)
        loss = _float(event.data.get("loss"))
        if loss is not None:
            row.loss = loss
            row.losses.append(loss)
        reward = _float(event.data.get("reward"))
        if reward is not None:
            row.reward = reward
            row.rewards.append(reward)
        metric = _float(event.data.get("val_metric"))
        if metric is not None:
            row.val_metric = metric
        changed = True
    return changed


def _int(value: Any, default: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def one_line(exc: BaseException) -> str:
    """The text the CLI prints for an error: ``str(exc)`` for ours, type and first line otherwise."""
    from console.errors import is_ours
    from console.redact import redact

    if is_ours(exc):
        return redact(str(exc))
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"internal error: {type(exc).__name__}: {redact(first)}"


def details_text(summary: str, details: Mapping[str, Any], outputs: Mapping[str, Any]) -> str:
    """A step's result for the details panel: the summary, then details and outputs as JSON."""
    parts = [summary or "(no result yet)"]
    if details:
        parts.append("details: " + json.dumps(details, indent=1, sort_keys=True, default=str))
    if outputs:
        parts.append("outputs: " + json.dumps(outputs, indent=1, sort_keys=True, default=str))
    return "\n".join(parts)
