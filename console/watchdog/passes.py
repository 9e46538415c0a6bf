"""One watchdog pass: list what is ours, record it and its price, judge it, end what must go.

Every pass (``watchdog.interval_s``) lists every instance tagged as ours through the
provider (managed-by tag, and an ``owner`` tag that is ``cloud.owner`` when there is one,
so a colleague's console on the same account is left alone), gives each a row in the
state store, records its spot rate when it changes, judges it by the rules
(`console.watchdog.rules`), and terminates the ones that must go through the instances
service, with the reason recorded. Every termination is confirmed (the provider reports
``terminated``) and retried on the next passes until it is.

Events written (kind: meaning): ``watchdog.terminate`` (decision, with rule and reason),
``watchdog.awaiting_upload``, ``watchdog.terminate_failed`` (first failure and every tenth),
``budget.reached``, and the store's own ``instance.terminated`` once confirmed. The
`console.notify.EventRelay` turns them (and run events) into notifications.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from console import cost
from console.instances import Instances
from console.notify import EventRelay, Notifier
from console.redact import redact
from console.resources import Resources
from console.state import RunRecord, StateStore
from console.watchdog.batch import watch_jobs
from console.watchdog.readings import Readings, default_readings
from console.watchdog.rules import IDLE_GPU_PCT, Facts, Verdict, first_rule, max_runtime_minutes, models_pending_upload
from console.watchdog.sagemaker import watch_training_jobs
from remote.errors import InstanceNotFound, RemoteError
from remote.providers.base import Provider

if TYPE_CHECKING:  # pragma: no cover
    from remote.providers.base import Instance, Price

log = logging.getLogger("console.watchdog")

PRICE_REFRESH_S = 300.0
"""How often a live instance's spot rate is looked up again (a cost sample is stored on change)."""


@dataclass
class PassReport:
    """What one pass saw and did."""

    started_at: float
    seen: int = 0
    terminated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting_for_upload: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    error: str | None = None
    took_s: float = 0.0


class Watchdog:
    """One watchdog's memory across passes. `run_pass` is one pass; `serve` loops until stopped."""

    def __init__(
        self,
        resources: Resources,
        store: StateStore,
        provider: "Provider | Callable[[], Provider] | None" = None,
        *,
        notifier: Notifier | None = None,
        readings: Readings | None = None,
        clock: Callable[[], float] = time.time,
        confirm_timeout_s: float | None = None,
        retry_pause_s: float = 1.0,
    ) -> None:
        self.resources = resources
        self.settings = resources.settings
        self.store = store
        # The watchdog never starts the sandbox: a sandbox that is down has no instances to watch.
        self._provider = provider if provider is not None else (lambda: resources.provider(start_sandbox=False))
        self.clock = clock
        w = self.settings.watchdog
        self.confirm_timeout_s = (
            confirm_timeout_s if confirm_timeout_s is not None else min(120.0, max(10.0, 4 * w.interval_s))
        )
        self.retry_pause_s = retry_pause_s
        self.readings = readings or default_readings(resources, store)
        self.directory = resources.paths.watchdog
        self.directory.mkdir(parents=True, exist_ok=True)
        self.notifier = notifier if notifier is not None else Notifier.from_settings(self.settings)
        self.relay = EventRelay(store, self.notifier, self.directory / "notify.json")
        self._idle_since: dict[str, float] = {}
        self._grace_since: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._priced_at: dict[str, float] = {}
        self._budget_told: set[str] = set()
        self.last_report: PassReport | None = None

    @property
    def provider(self) -> "Provider":
        p = self._provider
        if isinstance(p, Provider):
            return p
        return p()

    # -- one pass ------------------------------------------------------------------------

    def run_pass(self) -> PassReport:
        """Look at every managed instance once; terminate (and confirm) the ones that must go."""
        now = self.clock()
        report = PassReport(started_at=now)
        try:
            provider = self.provider
            live = provider.list_managed()
        except Exception as exc:  # noqa: BLE001 - provider or sandbox down: say so, try again next pass
            report.error = redact(f"cannot list instances: {exc}")
            log.warning("%s", report.error)
            self._finish(report)
            return report
        report.seen = len(live)
        self._sync_store(provider, live, now)
        self._record_rates(provider, live, now)
        verdicts = self._judge(live, now)
        report.verdicts = verdicts
        doomed = {v.instance_id for v in verdicts}
        for iid in [i for i in self._grace_since if i not in doomed]:
            del self._grace_since[iid]  # the condition cleared while it waited for the upload
        instances = Instances(self.resources, self.store, provider=provider)
        for verdict in verdicts:
            self._enforce(instances, verdict, report)
        self._settle_vanished(provider, {i.id for i in live})
        report.verdicts += watch_jobs(self, report, now)  # Batch jobs: the same rules (console.watchdog.batch)
        report.verdicts += watch_training_jobs(self, report, now)  # SageMaker jobs (console.watchdog.sagemaker)
        with contextlib.suppress(Exception):  # notifications never stop the watchdog
            self.relay.pump()
        self._finish(report)
        return report

    def _finish(self, report: PassReport) -> None:
        report.took_s = self.clock() - report.started_at
        self.last_report = report
        status = {
            "pid": os.getpid(),
            "last_pass_at": report.started_at,
            "took_s": round(report.took_s, 3),
            "seen": report.seen,
            "terminated": report.terminated,
            "failed": report.failed,
            "waiting_for_upload": report.waiting_for_upload,
            "error": report.error,
            "interval_s": self.settings.watchdog.interval_s,
            "verdicts": [asdict(v) for v in report.verdicts],
        }
        with contextlib.suppress(OSError):
            tmp = self.directory / "status.json.tmp"
            tmp.write_text(json.dumps(status, default=str, sort_keys=True))
            os.replace(tmp, self.directory / "status.json")

    def _sync_store(self, provider: "Provider", live: list["Instance"], now: float) -> None:
        """Every managed instance has a row in the store (orphans included, flagged)."""
        known = {r.id for r in self.store.instances()}
        for inst in live:
            if inst.id in known:
                continue
            run_id = inst.run_id if inst.run_id and self.store.get_run(inst.run_id) else None
            data: dict[str, Any] = {"seen_by": "watchdog"}
            if run_id is None:
                data["orphan_run_tag"] = inst.run_id or ""
            self.store.upsert_instance(
                inst.id,
                run_id=run_id,
                provider=provider.name,
                state=inst.state,
                instance_type=inst.instance_type,
                zone=inst.zone,
                launched_at=_launched_ts(inst, now),
                data=data,
            )

    def _record_rates(self, provider: "Provider", live: list["Instance"], now: float) -> None:
        """Store each live instance's spot rate when first seen and when it changes."""
        due = [i for i in live if i.is_live and now - self._priced_at.get(i.id, 0.0) >= PRICE_REFRESH_S]
        if not due:
            return
        prices: dict[tuple[str, str], Price] = {}
        try:
            for listed in provider.prices(sorted({i.instance_type for i in due})):
                prices[(listed.instance_type, listed.zone)] = listed
        except RemoteError as exc:  # prices are for the ledger; termination rules go on without them
            log.warning("%s", redact(f"cannot read prices: {exc}"))
        records = {r.id: r for r in self.store.instances()}
        for inst in due:
            price = prices.get((inst.instance_type, inst.zone))
            spot = price.spot_usd_per_hour if price and price.spot_usd_per_hour is not None else inst.spot_usd_per_hour
            if spot is None:
                continue
            on_demand = price.on_demand_usd_per_hour if price else None
            source = price.source if price else "launch tag"
            first = not cost.rates(self.store, inst.id)
            record = records.get(inst.id)
            cost.record_rate(self.store, inst.id, record.run_id if record else None, spot, on_demand, source)
            self._priced_at[inst.id] = now
            if first:
                with contextlib.suppress(Exception):
                    self.relay.announce_launch(
                        inst.id,
                        instance_type=inst.instance_type,
                        zone=inst.zone,
                        rate_usd_per_h=spot,
                        source=source,
                        run_id=record.run_id if record else inst.run_id,
                    )

    def _judge(self, live: list["Instance"], now: float) -> list[Verdict]:
        """The first rule each live (or stopped) instance of ours breaks (`console.watchdog.rules`)."""
        records = {r.id: r for r in self.store.instances()}
        runs: dict[str, RunRecord | None] = {}

        def run_of(run_id: str | None) -> RunRecord | None:
            if not run_id:
                return None
            if run_id not in runs:
                runs[run_id] = self.store.get_run(run_id)
            return runs[run_id]

        # Another operator's console on the same account tags its instances with its own
        # owner: those are not ours to judge (their own watchdog does), orphans included.
        owner = self.settings.cloud.owner
        candidates = [
            i for i in live if i.state not in ("shutting-down", "terminated") and i.tags.get("owner", owner) == owner
        ]
        breach_for = self._budgets([i.id for i in candidates], now)
        verdicts = []
        for inst in candidates:
            record = records.get(inst.id)
            run_id = record.run_id if record and record.run_id else None
            if run_id is None and inst.run_id and run_of(inst.run_id) is not None:
                run_id = inst.run_id
            run = run_of(run_id)
            launched = _launched_ts(inst, record.launched_at if record else None) or now
            facts = Facts(
                inst.id,
                run,
                inst.run_id,
                launched,
                max_runtime_minutes(inst.tags.get("max-runtime-minutes"), run, self.settings.max_runtime_hours)
                if run is not None
                else float("inf"),
                budget_reason=breach_for.get(inst.id),
            )
            verdict = first_rule(facts, now, self.settings.watchdog)
            if verdict is None and run is not None:
                # Idleness costs a reading (maybe over SSH): asked only when nothing else decided.
                verdict = first_rule(
                    replace(facts, idle_s=self._idle_for(inst, run.id, now)), now, self.settings.watchdog
                )
            if verdict is not None:
                verdicts.append(verdict)
        return verdicts

    def _budgets(self, live_ids: list[str], now: float) -> dict[str, str]:
        """The reason of the first budget each instance counts against, announced once per budget."""
        breach_for: dict[str, str] = {}
        for breach in cost.budget_breaches(self.store, self.settings, live_ids=live_ids, now=now):
            for iid in breach.instance_ids:
                breach_for.setdefault(iid, breach.reason)
            key = f"{breach.kind}:{breach.subject}"
            if key not in self._budget_told:
                self._budget_told.add(key)
                self.store.add_event(
                    breach.subject if breach.kind == "run" else None,
                    None,
                    "budget.reached",
                    breach.reason,
                    {
                        "kind": breach.kind,
                        "spent_usd": round(breach.spent_usd, 4),
                        "limit_usd": breach.limit_usd,
                        "instance_ids": list(breach.instance_ids),
                    },
                )
        return breach_for

    def _idle_for(self, inst: "Instance", run_id: str, now: float) -> float | None:
        """Seconds the GPU has been idle with no step running; None when it is busy or unknown."""
        if any(s.state == "running" for s in self.store.steps(run_id)):
            self._idle_since.pop(inst.id, None)
            return None
        try:
            reading = self.readings(inst)
        except Exception:  # noqa: BLE001 - a host we cannot read is not evidence of idleness
            reading = None
        if reading is None or reading.gpu_util_pct is None or reading.gpu_util_pct >= IDLE_GPU_PCT:
            self._idle_since.pop(inst.id, None)
            return None
        since = self._idle_since.setdefault(inst.id, reading.taken_at)
        return now - since

    # -- acting --------------------------------------------------------------------------

    def _enforce(self, instances: Instances, verdict: Verdict, report: PassReport) -> None:
        now = self.clock()
        grace = self.settings.watchdog.upload_grace_s
        reason = verdict.reason
        run_id = verdict.run_id
        if (
            verdict.rule != "orphan"
            and run_id
            and models_pending_upload(self.store.steps(run_id), self.store.events(run_id))
        ):
            since = self._grace_since.get(verdict.instance_id)
            if since is None:
                self._grace_since[verdict.instance_id] = now
                self.store.add_event(
                    run_id,
                    None,
                    "watchdog.awaiting_upload",
                    f"{verdict.instance_id} must go ({reason}); waiting up to {grace:g}s "
                    "for its models to be uploaded first",
                    {"instance_id": verdict.instance_id, "rule": verdict.rule},
                )
                since = now
            if now - since < grace:
                report.waiting_for_upload.append(verdict.instance_id)
                return
            reason += f"; models still not uploaded after {grace:g}s"
        if verdict.instance_id not in self._failures:
            self.store.add_event(
                run_id,
                None,
                "watchdog.terminate",
                f"terminating {verdict.instance_id}: {reason}",
                {"instance_id": verdict.instance_id, "rule": verdict.rule},
            )
        if self._terminate_confirmed(instances, verdict, reason):
            report.terminated.append(verdict.instance_id)
        else:
            report.failed.append(verdict.instance_id)

    def _terminate_confirmed(self, instances: Instances, verdict: Verdict, reason: str) -> bool:
        """Terminate, up to three tries now; the next pass tries again until it is confirmed."""
        iid = verdict.instance_id
        error = ""
        for attempt in range(3):
            try:
                ended = instances.terminate(
                    iid, reason=f"watchdog ({verdict.rule}): {reason}", timeout_s=self.confirm_timeout_s
                )
                if ended.confirmed:
                    self._failures.pop(iid, None)
                    self._grace_since.pop(iid, None)
                    self._idle_since.pop(iid, None)
                    log.info("%s", redact(f"terminated {iid}: {reason}"))
                    return True
                error = f"still {ended.state} after terminate"
            except RemoteError as exc:
                error = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            if attempt < 2:
                time.sleep(self.retry_pause_s * (attempt + 1))
        count = self._failures[iid] = self._failures.get(iid, 0) + 1
        log.warning("%s", f"terminate {iid} not confirmed ({error}); retrying next pass")
        if count == 1 or count % 10 == 0:
            self.store.add_event(
                verdict.run_id,
                None,
                "watchdog.terminate_failed",
                f"terminate {iid} not confirmed ({error}); retrying every pass",
                {"instance_id": iid, "failures": count},
            )
        return False

    def _settle_vanished(self, provider: "Provider", listed: set[str]) -> None:
        """Instances the store thinks live that the provider no longer lists: record how they ended."""
        for record in self.store.instances(active_only=True):
            if record.id in listed or record.provider != provider.name:
                continue
            try:
                inst = provider.describe(record.id)
            except InstanceNotFound:
                self.store.mark_instance_terminated(record.id, "no longer exists at the provider")
                continue
            except RemoteError:
                continue  # unreachable now; the next pass asks again
            if inst.state == "terminated":
                why = f" ({inst.state_reason})" if inst.state_reason else ""
                self.store.mark_instance_terminated(record.id, f"found terminated{why}")

    # -- the loop ------------------------------------------------------------------------

    def serve(self, stop: threading.Event) -> None:
        """Pass every interval until ``stop`` is set. A failing pass is logged, never fatal."""
        interval = self.settings.watchdog.interval_s
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.run_pass()
            except Exception as exc:  # noqa: BLE001 - the watchdog must outlive any one bad pass
                log.exception("%s", redact(f"watchdog pass failed: {exc}"))
            stop.wait(max(0.0, interval - (time.monotonic() - started)))


def _launched_ts(instance: "Instance", fallback: float | None) -> float | None:
    if instance.launched_at is not None:
        return instance.launched_at.timestamp()
    return fallback
