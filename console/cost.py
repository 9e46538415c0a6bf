"""The cost ledger: what each instance and run has cost, would have cost on demand, and will cost.

Prices live in the state store's ``costs`` table as *rate changes*: a row is written when an
instance is first seen and whenever its spot rate changes (`record_rate`). The cost of an
instance is the integral of that step function over its life, second by second, as EC2 bills
Linux spot (per second, 60 seconds at least): before its first recorded change an instance
runs at that first rate. Storage (the root EBS volume, gp3) is added per GB-hour. The
on-demand equivalent integrates the on-demand rate over the same seconds, so the saving is
the difference. Sandbox figures carry the sandbox price table's label (``source``).

Budgets (`budget_breaches`): per run (the checklist's ``budget_usd``, else
``budget.run_usd``), per UTC day over every instance (``budget.daily_usd``) and per instance
(``budget.instance_usd``). `projected_cost` extends an instance at its current rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterable

from console.state import InstanceRecord, StateStore

if TYPE_CHECKING:  # pragma: no cover
    from console.settings import Settings

GP3_USD_PER_GB_MONTH = 0.08
"""EBS gp3 list price (us-east-1); a month is 730 hours in AWS's arithmetic."""
DEFAULT_VOLUME_GB = 100
"""Root volume assumed when the instance record does not say (``data["volume_gb"]``)."""
MIN_BILLED_S = 60.0
"""EC2 bills Linux instances per second with a one-minute minimum."""


@dataclass(frozen=True)
class Rate:
    """The rate an instance runs at from ``ts`` on."""

    ts: float
    spot_usd_per_h: float
    on_demand_usd_per_h: float | None
    source: str


@dataclass(frozen=True)
class InstanceCost:
    """One instance's line in the ledger."""

    instance_id: str
    run_id: str | None
    instance_type: str
    zone: str
    started_at: float
    ended_at: float | None
    """When it was terminated; None while it still runs (figures are then up to now)."""
    seconds: float
    """Billed seconds (at least `MIN_BILLED_S`)."""
    spot_usd: float
    storage_usd: float
    on_demand_usd: float | None
    """What the same seconds cost on demand (plus the same storage); None when unknown."""
    rate_usd_per_h: float | None
    """The current (or last) spot rate plus storage per hour."""
    source: str
    """Where the prices came from ("sandbox table", "aws", ...)."""

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0

    @property
    def cost_usd(self) -> float:
        return self.spot_usd + self.storage_usd

    @property
    def savings_usd(self) -> float | None:
        return None if self.on_demand_usd is None else self.on_demand_usd - self.cost_usd

    @property
    def live(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True)
class BudgetBreach:
    """A budget reached: which, the spend, the limit, and the live instances it concerns."""

    kind: str
    """run, daily or instance."""
    subject: str
    """The run id, the UTC date, or the instance id."""
    spent_usd: float
    limit_usd: float
    instance_ids: tuple[str, ...]

    @property
    def reason(self) -> str:
        what = {
            "run": f"run {self.subject}",
            "daily": f"daily ({self.subject} UTC)",
            "instance": f"instance {self.subject}",
        }[self.kind]
        return f"{what} budget reached: {usd(self.spent_usd)} of {usd(self.limit_usd)}"


def rates(store: StateStore, instance_id: str) -> list[Rate]:
    """The recorded rate changes of an instance, oldest first."""
    return [
        Rate(r["ts"], float(r["spot_usd_per_h"]), r["on_demand_usd_per_h"], r["source"])
        for r in store.cost_samples(instance_id)
    ]


def record_rate(
    store: StateStore,
    instance_id: str,
    run_id: str | None,
    spot_usd_per_h: float,
    on_demand_usd_per_h: float | None,
    source: str,
) -> bool:
    """Store the instance's current rate if it differs from the last one stored; True if stored."""
    known = rates(store, instance_id)
    if (
        known
        and math.isclose(known[-1].spot_usd_per_h, spot_usd_per_h, abs_tol=1e-9)
        and known[-1].on_demand_usd_per_h == on_demand_usd_per_h
    ):
        return False
    store.add_cost_sample(instance_id, run_id, spot_usd_per_h, on_demand_usd_per_h, source)
    return True


def integrate(changes: list[Rate], start: float, end: float) -> tuple[float, float | None]:
    """Spot and on-demand dollars over [start, end) for a step-function rate; per second.

    Before the first change the first rate applies (the price at launch). The on-demand
    figure is None when any part of the span has no on-demand rate.
    """
    if end <= start or not changes:
        return 0.0, (0.0 if changes else None)
    spot = 0.0
    on_demand: float | None = 0.0
    for i, change in enumerate(changes):
        seg_start = start if i == 0 else max(start, change.ts)
        seg_end = end if i + 1 == len(changes) else min(end, changes[i + 1].ts)
        if seg_end <= seg_start:
            continue
        seconds = seg_end - seg_start
        spot += change.spot_usd_per_h * seconds / 3600.0
        if on_demand is not None:
            on_demand = (
                None
                if change.on_demand_usd_per_h is None
                else on_demand + change.on_demand_usd_per_h * seconds / 3600.0
            )
    return spot, on_demand


def storage_usd_per_h(record: InstanceRecord) -> float:
    gb = record.data.get("volume_gb") or DEFAULT_VOLUME_GB
    try:
        gb = float(gb)
    except (TypeError, ValueError):
        gb = DEFAULT_VOLUME_GB
    return gb * GP3_USD_PER_GB_MONTH / 730.0


def instance_cost(
    store: StateStore, record: InstanceRecord, *, now: float | None = None, window: tuple[float, float] | None = None
) -> InstanceCost:
    """The ledger line of one instance, up to now (or within ``window``, for daily budgets)."""
    now = time.time() if now is None else now
    changes = rates(store, record.id)
    started = record.launched_at or (changes[0].ts if changes else now)
    ended = record.terminated_at if record.state == "terminated" else None
    end = ended if ended is not None else now
    lo, hi = (started, end) if window is None else (max(started, window[0]), min(end, window[1]))
    actual = max(0.0, hi - lo)
    billed = actual
    if window is None and changes:
        billed = max(MIN_BILLED_S, math.ceil(actual))
    spot, on_demand = integrate(changes, lo, hi)
    if billed > actual and changes:
        # The one-minute minimum (and the partial second) at the first rate.
        extra = billed - actual
        spot += changes[0].spot_usd_per_h * extra / 3600.0
        if on_demand is not None and changes[0].on_demand_usd_per_h is not None:
            on_demand += changes[0].on_demand_usd_per_h * extra / 3600.0
    storage = storage_usd_per_h(record) * billed / 3600.0 if changes else 0.0
    current = changes[-1] if changes else None
    return InstanceCost(
        instance_id=record.id,
        run_id=record.run_id,
        instance_type=record.instance_type,
        zone=record.zone,
        started_at=started,
        ended_at=ended,
        seconds=billed,
        spot_usd=spot,
        storage_usd=storage,
        on_demand_usd=None if on_demand is None else on_demand + storage,
        rate_usd_per_h=None if current is None else current.spot_usd_per_h + storage_usd_per_h(record),
        source=current.source if current else "no price recorded",
    )


def ledger(
    store: StateStore, *, run_id: str | None = None, since: float | None = None, now: float | None = None
) -> list[InstanceCost]:
    """Ledger lines for every instance (of one run; alive at some point after ``since``)."""
    now = time.time() if now is None else now
    lines = []
    for record in store.instances(run_id=run_id):
        if since is not None and record.state == "terminated" and (record.terminated_at or now) < since:
            continue
        lines.append(instance_cost(store, record, now=now))
    return lines


def utc_day_start(ts: float) -> float:
    day = datetime.fromtimestamp(ts, timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp()


def daily_spend(store: StateStore, *, now: float | None = None) -> float:
    """Dollars spent since midnight UTC over every instance (spot and storage)."""
    now = time.time() if now is None else now
    window = (utc_day_start(now), now)
    return sum(
        instance_cost(store, r, now=now, window=window).cost_usd
        for r in store.instances()
        if (r.terminated_at or now) >= window[0]
    )


def usd(amount: float) -> str:
    """Dollars to the cent, or to four significant figures under a dollar (a $0.001 budget is not "$0.00")."""
    return f"${amount:.2f}" if abs(amount) >= 1 or amount == 0 else f"${amount:.4g}"


def run_budget_usd(store: StateStore, run_id: str, settings: "Settings") -> float:
    """The run's budget: the checklist's ``budget_usd`` when it sets one, else ``budget.run_usd``."""
    run = store.get_run(run_id)
    value = run.params.get("budget_usd") if run is not None else None
    try:
        return float(value) if value is not None else settings.budget.run_usd
    except (TypeError, ValueError):
        return settings.budget.run_usd


def budget_breaches(
    store: StateStore, settings: "Settings", *, live_ids: Iterable[str], now: float | None = None
) -> list[BudgetBreach]:
    """Every budget reached that concerns a live instance (``live_ids``), daily first."""
    now = time.time() if now is None else now
    live = set(live_ids)
    records = {r.id: r for r in store.instances()}
    lines = {i: instance_cost(store, records[i], now=now) for i in live if i in records}
    breaches: list[BudgetBreach] = []
    today = daily_spend(store, now=now)
    if live and today >= settings.budget.daily_usd:
        date = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")
        breaches.append(BudgetBreach("daily", date, today, settings.budget.daily_usd, tuple(sorted(live))))
    run_ids = sorted({rid for i in lines if (rid := records[i].run_id)})
    for run_id in run_ids:
        spent = sum(line.cost_usd for line in ledger(store, run_id=run_id, now=now))
        limit = run_budget_usd(store, run_id, settings)
        if spent >= limit:
            ids = tuple(sorted(i for i in lines if records[i].run_id == run_id))
            breaches.append(BudgetBreach("run", run_id, spent, limit, ids))
    for instance_id, line in sorted(lines.items()):
        if line.cost_usd >= settings.budget.instance_usd:
            breaches.append(
                BudgetBreach("instance", instance_id, line.cost_usd, settings.budget.instance_usd, (instance_id,))
            )
    return breaches


def projected_cost(line: InstanceCost, remaining_s: float) -> float:
    """The instance's cost if it runs ``remaining_s`` more seconds at its current rate."""
    if line.rate_usd_per_h is None or not line.live:
        return line.cost_usd
    return line.cost_usd + line.rate_usd_per_h * max(0.0, remaining_s) / 3600.0


def step_remaining_s(
    store: StateStore, run_id: str, *, now: float | None = None, default_timeout_s: float = 1800.0
) -> float:
    """Seconds until the run's running step hits its timeout (the step's end at worst), 0 if none runs."""
    now = time.time() if now is None else now
    running = [s for s in store.steps(run_id) if s.state == "running" and s.started_at]
    if not running:
        return 0.0
    step = running[0]
    # The policy the engine recorded with the run (and with this attempt): never the checklist file.
    timeout = float(step.policy.get("timeout_s", 0) or 0) or default_timeout_s
    return max(0.0, (step.started_at or now) + timeout - now)


def batch_job_costs(store: StateStore, run_id: str) -> dict[str, float]:
    """Estimated dollars of each AWS Batch job of ``run_id`` from the ledger's Batch table
    (vCPU-seconds at the spot estimate; `console.batch_ledger`)."""
    from console.batch_ledger import batch_costs

    return {job.job_id: job.cost_usd for job in batch_costs(store, run_id=run_id)}
