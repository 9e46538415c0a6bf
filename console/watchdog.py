"""The watchdog: no instance outlives its purpose, even when the console that launched it dies.

A separate process (`console watchdog run|start|stop|status|once`), one per state
directory (``<state_dir>/watchdog/``: ``watchdog.lock`` held with fcntl while it runs,
``watchdog.pid``, ``status.json`` after every pass, ``watchdog.log``, ``notify.json``).
Every pass (``watchdog.interval_s``) it lists every instance tagged as ours through the
provider (managed-by tag, and an ``owner`` tag that is ``cloud.owner`` when there is one,
so a colleague's console on the same account is left alone) and terminates, with the
reason recorded in the state store, any that is:

=============  ===========================================================================
rule           when
=============  ===========================================================================
orphan         tagged as ours, but no run in the state store knows it
run-ended      its run finished (succeeded, failed, blocked, cancelled) and left it running
budget         its run's budget, the daily budget or the per-instance budget is reached
max-runtime    up longer than its max-runtime tag (else the run's, else the settings')
heartbeat      its run is unfinished and no console has beaten for ``heartbeat_timeout_s``
idle           GPU below `IDLE_GPU_PCT` for ``idle_timeout_s`` while no step of its run runs
=============  ===========================================================================

Models not yet uploaded (`models_pending_upload`: the run's ``train`` step succeeded and its
``upload`` step has not, and no `UPLOADED_EVENTS` event came after the training) hold a
termination back up to ``upload_grace_s``; then it goes ahead anyway. Orphans have no run,
so nothing holds them. Every termination is confirmed (the provider reports
``terminated``) and retried on the next passes until it is.

Events written (kind: meaning): ``watchdog.terminate`` (decision, with rule and reason),
``watchdog.awaiting_upload``, ``watchdog.terminate_failed`` (first failure and every tenth),
``budget.reached``, and the store's own ``instance.terminated`` once confirmed. The
`console.notify.EventRelay` turns them (and run events) into notifications.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from console import cost
from console.errors import ConsoleError, UsageError
from console.notify import EventRelay, Notifier
from console.redact import RedactingFilter, redact
from console.state import RunRecord, StateStore

if TYPE_CHECKING:  # pragma: no cover
    from console.settings import Settings
    from remote.providers.base import Instance, Price

log = logging.getLogger("console.watchdog")

FINISHED_RUN_STATES = frozenset({"succeeded", "failed", "blocked", "cancelled"})
IDLE_GPU_PCT = 5.0
"""GPU utilisation below this counts as idle."""
PRICE_REFRESH_S = 300.0
"""How often a live instance's spot rate is looked up again (a cost sample is stored on change)."""
UPLOADED_EVENTS = frozenset({"artifacts.uploaded", "models.uploaded"})
"""Event kinds that say the run's models are in the artifact store, sha256 verified: the upload
step writes ``artifacts.uploaded``; anything else that verified them may write ``models.uploaded``."""
WATCHDOG_DIR = "watchdog"


class WatchdogProvider(Protocol):
    """The part of `remote.providers.base.Provider` the watchdog uses."""

    name: str

    def prices(self, instance_types: Sequence[str]) -> "list[Price]": ...

    def describe(self, instance_id: str) -> "Instance": ...

    def list_managed(self) -> "list[Instance]": ...

    def terminate(self, instance_id: str, *, timeout_s: float = 300.0) -> "Instance": ...


@dataclass(frozen=True)
class GpuReading:
    """GPU utilisation of an instance at a moment (None: the host has no GPU reading)."""

    taken_at: float
    gpu_util_pct: float | None


Readings = Callable[["Instance"], GpuReading | None]
"""Where the idle rule gets GPU utilisation from."""


@dataclass(frozen=True)
class Verdict:
    """Why an instance must go."""

    instance_id: str
    run_id: str | None
    rule: str
    reason: str


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


# -- the rules ------------------------------------------------------------------------


def models_pending_upload(store: StateStore, run_id: str | None) -> bool:
    """True when the run trained models that are not yet verified in the artifact store."""
    if not run_id:
        return False
    steps = {s.name: s for s in store.steps(run_id)}
    train, upload = steps.get("train"), steps.get("upload")
    if train is None or train.state != "succeeded":
        return False
    if upload is not None and upload.state in ("succeeded", "skipped"):
        return False
    if upload is not None and upload.outputs.get("verified"):
        return False
    trained_at = train.finished_at or 0.0
    return not any(e.kind in UPLOADED_EVENTS and e.ts >= trained_at for e in store.events(run_id))


def store_readings(store: StateStore, *, max_age_s: float) -> Readings:
    """Readings from ``host.reading`` events (data: instance_id, gpu_util_pct) no older than max_age_s."""

    def read(instance: "Instance") -> GpuReading | None:
        latest = None
        for event in store.events(instance.run_id) if instance.run_id else store.events():
            if event.kind == "host.reading" and event.data.get("instance_id") == instance.id:
                latest = event
        if latest is None or time.time() - latest.ts > max_age_s:
            return None
        value = latest.data.get("gpu_util_pct")
        return GpuReading(latest.ts, float(value) if value is not None else None)

    return read


def ssh_readings(settings: "Settings", store: StateStore, *, every_s: float) -> Readings:
    """Readings taken over SSH with `remote.metrics.read_host`, at most once per ``every_s`` per instance.

    The highest utilisation over the host's GPUs counts; a host without nvidia-smi (every
    sandbox host) gives None, which the idle rule never takes for idleness.
    """
    taken: dict[str, GpuReading] = {}

    def read(instance: "Instance") -> GpuReading | None:
        cached = taken.get(instance.id)
        if cached is not None and time.time() - cached.taken_at < every_s:
            return cached
        from console.steps.cloud_sync import instance_coordinates, ssh_runner
        from remote.metrics import read_host

        try:
            runner = ssh_runner(settings, instance_coordinates(settings, store, instance.id))
            try:
                host = read_host(runner, timeout_s=20.0)
            finally:
                runner.close()
        except Exception as exc:  # unreachable is not idle; and do not retry it every pass
            log.info("%s", redact(f"no reading from {instance.id}: {exc}"))
            taken[instance.id] = GpuReading(time.time(), None)
            return None
        utils = [g.utilization_pct for g in host.gpus if g.utilization_pct is not None]
        reading = GpuReading(host.taken_at, max(utils) if host.kind == "gpu" and utils else None)
        taken[instance.id] = reading
        return reading

    return read


def default_readings(settings: "Settings", store: StateStore) -> Readings:
    """Fresh ``host.reading`` events first (the TUI's panes may write them), else SSH."""
    w = settings.watchdog
    from_store = store_readings(store, max_age_s=max(60.0, 3 * w.interval_s))
    over_ssh = ssh_readings(settings, store, every_s=max(w.interval_s, min(300.0, w.idle_timeout_s / 10)))

    def read(instance: "Instance") -> GpuReading | None:
        return from_store(instance) or over_ssh(instance)

    return read


def _launched_ts(instance: "Instance", fallback: float | None) -> float | None:
    if instance.launched_at is not None:
        return instance.launched_at.timestamp()
    return fallback


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class Watchdog:
    """One watchdog's rules and memory. `run_pass` is one pass; `serve` loops until stopped."""

    def __init__(
        self,
        settings: "Settings",
        store: StateStore,
        provider: WatchdogProvider | Callable[[], WatchdogProvider],
        *,
        notifier: Notifier | None = None,
        readings: Readings | None = None,
        clock: Callable[[], float] = time.time,
        confirm_timeout_s: float | None = None,
        retry_pause_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self._provider = provider
        self.clock = clock
        w = settings.watchdog
        self.confirm_timeout_s = confirm_timeout_s if confirm_timeout_s is not None else min(120.0, max(10.0, 4 * w.interval_s))
        self.retry_pause_s = retry_pause_s
        self.readings = readings or default_readings(settings, store)
        self.directory = watchdog_dir(settings)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.notifier = notifier if notifier is not None else Notifier.from_settings(settings)
        self.relay = EventRelay(store, self.notifier, self.directory / "notify.json")
        self._idle_since: dict[str, float] = {}
        self._grace_since: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._priced_at: dict[str, float] = {}
        self._budget_told: set[str] = set()
        self.last_report: PassReport | None = None

    @property
    def provider(self) -> WatchdogProvider:
        p = self._provider
        return p if hasattr(p, "list_managed") else p()  # type: ignore[operator,return-value]

    # -- one pass ------------------------------------------------------------------------

    def run_pass(self) -> PassReport:
        """Look at every managed instance once; terminate (and confirm) the ones that must go."""
        now = self.clock()
        report = PassReport(started_at=now)
        try:
            provider = self.provider
            live = provider.list_managed()
        except Exception as exc:  # provider or sandbox down: say so, try again next pass
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
        for verdict in verdicts:
            self._enforce(provider, verdict, report)
        self._settle_vanished(provider, {i.id for i in live})
        with contextlib.suppress(Exception):  # notifications never stop the watchdog
            self.relay.pump()
        self._finish(report)
        return report

    def _finish(self, report: PassReport) -> None:
        report.took_s = self.clock() - report.started_at
        self.last_report = report
        status = {
            "pid": os.getpid(), "last_pass_at": report.started_at, "took_s": round(report.took_s, 3),
            "seen": report.seen, "terminated": report.terminated, "failed": report.failed,
            "waiting_for_upload": report.waiting_for_upload, "error": report.error,
            "interval_s": self.settings.watchdog.interval_s,
            "verdicts": [asdict(v) for v in report.verdicts],
        }
        with contextlib.suppress(OSError):
            _write_json(self.directory / "status.json", status)

    def _sync_store(self, provider: WatchdogProvider, live: list["Instance"], now: float) -> None:
        """Every managed instance has a row in the store (orphans included, flagged)."""
        known = {r.id: r for r in self.store.instances()}
        for inst in live:
            if inst.id in known:
                continue
            run_id = inst.run_id if inst.run_id and self.store.get_run(inst.run_id) else None
            data: dict[str, Any] = {"seen_by": "watchdog"}
            if run_id is None:
                data["orphan_run_tag"] = inst.run_id or ""
            self.store.upsert_instance(
                inst.id, run_id=run_id, provider=getattr(provider, "name", inst.provider), state=inst.state,
                instance_type=inst.instance_type, zone=inst.zone, launched_at=_launched_ts(inst, now), data=data,
            )

    def _record_rates(self, provider: WatchdogProvider, live: list["Instance"], now: float) -> None:
        """Store each live instance's spot rate when first seen and when it changes."""
        due = [i for i in live if i.is_live and now - self._priced_at.get(i.id, 0.0) >= PRICE_REFRESH_S]
        if not due:
            return
        prices: dict[tuple[str, str], "Price"] = {}
        try:
            for price in provider.prices(sorted({i.instance_type for i in due})):
                prices[(price.instance_type, price.zone)] = price
        except Exception as exc:  # prices are for the ledger; termination rules go on without them
            log.warning("%s", redact(f"cannot read prices: {exc}"))
        for inst in due:
            price = prices.get((inst.instance_type, inst.zone))
            spot = price.spot_usd_per_hour if price and price.spot_usd_per_hour is not None else inst.spot_usd_per_hour
            if spot is None:
                continue
            on_demand = price.on_demand_usd_per_hour if price else None
            source = price.source if price else "launch tag"
            first = not cost.rates(self.store, inst.id)
            record = next((r for r in self.store.instances() if r.id == inst.id), None)
            cost.record_rate(self.store, inst.id, record.run_id if record else None, spot, on_demand, source)
            self._priced_at[inst.id] = now
            if first:
                with contextlib.suppress(Exception):
                    self.relay.announce_launch(inst.id, instance_type=inst.instance_type, zone=inst.zone,
                                               rate_usd_per_h=spot, source=source,
                                               run_id=record.run_id if record else inst.run_id)

    def _judge(self, live: list["Instance"], now: float) -> list[Verdict]:
        """The first rule each live (or stopped) instance breaks, in the order of the table above."""
        w = self.settings.watchdog
        records = {r.id: r for r in self.store.instances()}
        runs: dict[str, RunRecord | None] = {}
        verdicts: dict[str, Verdict] = {}

        def run_of(run_id: str | None) -> RunRecord | None:
            if not run_id:
                return None
            if run_id not in runs:
                runs[run_id] = self.store.get_run(run_id)
            return runs[run_id]

        # Another operator's console on the same account tags its instances with its own
        # owner: those are not ours to judge (their own watchdog does), orphans included.
        owner = self.settings.cloud.owner
        candidates = [i for i in live if i.state not in ("shutting-down", "terminated")
                      and i.tags.get("owner", owner) == owner]
        breaches = cost.budget_breaches(self.store, self.settings, live_ids=[i.id for i in candidates], now=now)
        breach_for: dict[str, cost.BudgetBreach] = {}
        for breach in breaches:
            for iid in breach.instance_ids:
                breach_for.setdefault(iid, breach)
            key = f"{breach.kind}:{breach.subject}"
            if key not in self._budget_told:
                self._budget_told.add(key)
                self.store.add_event(breach.subject if breach.kind == "run" else None, None, "budget.reached",
                                     breach.reason, {"kind": breach.kind, "spent_usd": round(breach.spent_usd, 4),
                                                     "limit_usd": breach.limit_usd,
                                                     "instance_ids": list(breach.instance_ids)})

        for inst in candidates:
            record = records.get(inst.id)
            run_id = record.run_id if record and record.run_id else None
            if run_id is None and inst.run_id and run_of(inst.run_id) is not None:
                run_id = inst.run_id
            run = run_of(run_id)
            launched = _launched_ts(inst, record.launched_at if record else None) or now

            def verdict(rule: str, reason: str) -> None:
                verdicts.setdefault(inst.id, Verdict(inst.id, run_id, rule, reason))

            if run is None:
                tag = f" (tagged run-id {inst.run_id}, unknown here)" if inst.run_id else ""
                verdict("orphan", f"orphan: tagged as ours but no run in the state store knows it{tag}")
                continue
            if run.status in FINISHED_RUN_STATES:
                verdict("run-ended", f"run {run.id} {run.status} but left its instance running")
                continue
            if inst.id in breach_for:
                verdict("budget", breach_for[inst.id].reason)
                continue
            max_minutes = _float(inst.tags.get("max-runtime-minutes"))
            if max_minutes is None:
                hours = _float(run.params.get("max_runtime_hours"))
                max_minutes = (hours if hours is not None else self.settings.max_runtime_hours) * 60
            up_s = now - launched
            if up_s > max_minutes * 60:
                verdict("max-runtime", f"up {up_s / 60:.1f} min, past its max runtime of {max_minutes:g} min")
                continue
            last_alive = max(run.heartbeat_at or 0.0, launched)
            silent = now - last_alive
            if silent > w.heartbeat_timeout_s:
                verdict("heartbeat", f"no heartbeat from the console driving run {run.id} for {silent:.0f}s "
                                     f"(timeout {w.heartbeat_timeout_s:g}s)")
                continue
            idle = self._idle_for(inst, run.id, now)
            if idle is not None and idle > w.idle_timeout_s:
                verdict("idle", f"GPU idle for {idle:.0f}s (timeout {w.idle_timeout_s:g}s) with no step using it")
        return list(verdicts.values())

    def _idle_for(self, inst: "Instance", run_id: str, now: float) -> float | None:
        """Seconds the GPU has been idle with no step running; None when it is busy or unknown."""
        if any(s.state == "running" for s in self.store.steps(run_id)):
            self._idle_since.pop(inst.id, None)
            return None
        try:
            reading = self.readings(inst)
        except Exception:  # a host we cannot read is not evidence of idleness
            reading = None
        if reading is None or reading.gpu_util_pct is None or reading.gpu_util_pct >= IDLE_GPU_PCT:
            self._idle_since.pop(inst.id, None)
            return None
        since = self._idle_since.setdefault(inst.id, reading.taken_at)
        return now - since

    # -- acting --------------------------------------------------------------------------

    def _enforce(self, provider: WatchdogProvider, verdict: Verdict, report: PassReport) -> None:
        now = self.clock()
        grace = self.settings.watchdog.upload_grace_s
        reason = verdict.reason
        if verdict.rule != "orphan" and models_pending_upload(self.store, verdict.run_id):
            since = self._grace_since.get(verdict.instance_id)
            if since is None:
                self._grace_since[verdict.instance_id] = now
                self.store.add_event(verdict.run_id, None, "watchdog.awaiting_upload",
                                     f"{verdict.instance_id} must go ({reason}); waiting up to {grace:g}s "
                                     "for its models to be uploaded first",
                                     {"instance_id": verdict.instance_id, "rule": verdict.rule})
                since = now
            if now - since < grace:
                report.waiting_for_upload.append(verdict.instance_id)
                return
            reason += f"; models still not uploaded after {grace:g}s"
        if verdict.instance_id not in self._failures:
            self.store.add_event(verdict.run_id, None, "watchdog.terminate", f"terminating {verdict.instance_id}: {reason}",
                                 {"instance_id": verdict.instance_id, "rule": verdict.rule})
        if self._terminate_confirmed(provider, verdict, reason):
            report.terminated.append(verdict.instance_id)
        else:
            report.failed.append(verdict.instance_id)

    def _terminate_confirmed(self, provider: WatchdogProvider, verdict: Verdict, reason: str) -> bool:
        """Terminate, up to three tries now; the next pass tries again until it is confirmed."""
        iid = verdict.instance_id
        error = ""
        for attempt in range(3):
            try:
                inst = provider.terminate(iid, timeout_s=self.confirm_timeout_s)
                if inst.state == "terminated":
                    self.store.mark_instance_terminated(iid, f"watchdog ({verdict.rule}): {reason}")
                    self._failures.pop(iid, None)
                    self._grace_since.pop(iid, None)
                    self._idle_since.pop(iid, None)
                    log.info("%s", redact(f"terminated {iid}: {reason}"))
                    return True
                error = f"still {inst.state} after terminate"
            except Exception as exc:
                error = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            if attempt < 2:
                time.sleep(self.retry_pause_s * (attempt + 1))
        count = self._failures[iid] = self._failures.get(iid, 0) + 1
        log.warning("%s", f"terminate {iid} not confirmed ({error}); retrying next pass")
        if count == 1 or count % 10 == 0:
            self.store.add_event(verdict.run_id, None, "watchdog.terminate_failed",
                                 f"terminate {iid} not confirmed ({error}); retrying every pass",
                                 {"instance_id": iid, "failures": count})
        return False

    def _settle_vanished(self, provider: WatchdogProvider, listed: set[str]) -> None:
        """Instances the store thinks live that the provider no longer lists: record how they ended."""
        name = getattr(provider, "name", "")
        for record in self.store.instances(active_only=True):
            if record.id in listed or (name and record.provider != name):
                continue
            try:
                inst = provider.describe(record.id)
            except Exception as exc:
                if getattr(exc, "code", None) in ("InvalidInstanceID.NotFound",) or type(exc).__name__ == "InstanceNotFound":
                    self.store.mark_instance_terminated(record.id, "no longer exists at the provider")
                continue
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
            except Exception as exc:  # the watchdog must outlive any one bad pass
                log.exception("%s", redact(f"watchdog pass failed: {exc}"))
            stop.wait(max(0.0, interval - (time.monotonic() - started)))


# -- the console's side of the dead-man switch -----------------------------------------


def touch_instance_heartbeats(settings: "Settings", store: StateStore, run_id: str) -> list[str]:
    """Touch the dead-man heartbeat file on every live instance of the run; the ids touched.

    The console driving a run calls this every ``heartbeat_timeout_s / 3`` (next to
    `StateStore.heartbeat`); when it stops (killed, laptop closed), each instance ends itself
    (`remote.deadman`). Failures are logged and skipped: a missed touch is retried next time.
    """
    from console.steps.cloud_sync import instance_coordinates, ssh_runner
    from remote.deadman import heartbeat_touch_command

    touched = []
    for record in store.instances(run_id=run_id, active_only=True):
        if record.provider == "static":
            continue  # a static host carries no dead-man switch: it is not ours to power off
        try:
            with ssh_runner(settings, instance_coordinates(settings, store, record.id)) as runner:
                runner.run(heartbeat_touch_command(), timeout_s=20.0)
            touched.append(record.id)
        except Exception as exc:  # the next beat tries again; the switch allows for a few misses
            log.warning("%s", redact(f"cannot touch the heartbeat on {record.id}: {exc}"))
    return touched


# -- the process: one per state directory ---------------------------------------------


def watchdog_dir(settings: "Settings") -> Path:
    return Path(settings.state_dir).expanduser() / WATCHDOG_DIR


class WatchdogLock:
    """The per-state-dir lock (fcntl) a running watchdog holds; the pid file names the holder."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.lock_path = self.directory / "watchdog.lock"
        self.pid_path = self.directory / "watchdog.pid"
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        self._fd = fd
        _write_text(self.pid_path, f"{os.getpid()}\n")
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                if read_pid(self.directory) == os.getpid():
                    self.pid_path.unlink()
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WatchdogLock":
        if not self.acquire():
            raise WatchdogRunning(
                f"a watchdog is already running for {self.directory.parent} (pid {read_pid(self.directory)})",
                hint="see `console watchdog status`")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @staticmethod
    def is_held(directory: Path) -> bool:
        lock_path = Path(directory) / "watchdog.lock"
        if not lock_path.exists():
            return False
        fd = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)


class WatchdogRunning(UsageError):
    """A watchdog already runs for this state directory."""


class WatchdogNotRunning(ConsoleError):
    """No watchdog runs for this state directory."""


def read_pid(directory: Path) -> int | None:
    try:
        return int((Path(directory) / "watchdog.pid").read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class WatchdogStatus:
    """What `console watchdog status` shows."""

    running: bool
    pid: int | None
    last_pass: dict[str, Any] | None
    directory: Path


def watchdog_status(settings: "Settings") -> WatchdogStatus:
    directory = watchdog_dir(settings)
    running = WatchdogLock.is_held(directory)
    last = None
    with contextlib.suppress(OSError, ValueError):
        last = json.loads((directory / "status.json").read_text())
    return WatchdogStatus(running, read_pid(directory) if running else None, last, directory)


def provider_for(settings: "Settings") -> Callable[[], WatchdogProvider]:
    """A factory for the provider the settings describe (`console.steps.cloud.cloud_provider`).

    Built once and kept (a boto3 client costs a tenth of a second of CPU); on the sandbox
    profile it is rebuilt when the sandbox daemon restarts on another address. The watchdog
    never starts the sandbox: a sandbox that is down has no instances left to watch.
    """
    from console.steps.cloud import cloud_provider, sandbox_endpoints, uses_sandbox

    cache: dict[str, Any] = {}

    def make() -> WatchdogProvider:
        key = sandbox_endpoints(settings, start=False).moto_url if uses_sandbox(settings) else "configured"
        if cache.get("key") != key:
            cache["provider"] = cloud_provider(settings, start_sandbox=False)
            cache["key"] = key
        return cache["provider"]

    return make


def _setup_logging(directory: Path, *, foreground: bool) -> None:
    handler: logging.Handler = logging.FileHandler(directory / "watchdog.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    if foreground:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        stream.addFilter(RedactingFilter())
        root.addHandler(stream)
    root.setLevel(logging.INFO)
    # boto and urllib3 chatter at INFO would fill the log every pass.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_foreground(settings: "Settings", store: StateStore, *, watchdog: Watchdog | None = None,
                   stop: threading.Event | None = None) -> None:
    """`console watchdog run`: hold the lock and pass every interval until SIGTERM/SIGINT."""
    directory = watchdog_dir(settings)
    with WatchdogLock(directory):
        _setup_logging(directory, foreground=sys.stderr.isatty())
        dog = watchdog or Watchdog(settings, store, provider_for(settings))
        stop = stop or threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
        log.info("watchdog %d watching %s every %gs", os.getpid(), settings.state_dir, settings.watchdog.interval_s)
        dog.serve(stop)
        log.info("watchdog %d stopped", os.getpid())


def run_once(settings: "Settings", store: StateStore, *, watchdog: Watchdog | None = None) -> PassReport | None:
    """`console watchdog once`: one pass, unless a running watchdog already covers this state dir (None)."""
    lock = WatchdogLock(watchdog_dir(settings))
    if not lock.acquire():
        return None
    try:
        if watchdog is None:
            _setup_logging(lock.directory, foreground=False)
        return (watchdog or Watchdog(settings, store, provider_for(settings))).run_pass()
    finally:
        lock.release()


def start_background(settings: "Settings", *, config_path: str | os.PathLike[str] | None = None,
                     wait_s: float = 10.0) -> int:
    """Start `console watchdog run` detached for this state dir; its pid. Refuses if one runs."""
    directory = watchdog_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    if WatchdogLock.is_held(directory):
        raise WatchdogRunning(f"a watchdog is already running (pid {read_pid(directory)})",
                              hint="see `console watchdog status`")
    argv = [sys.executable, "-m", "console", "watchdog", "run",
            "--state-dir", str(Path(settings.state_dir).expanduser()), "--profile", settings.profile]
    if config_path:
        argv += ["--config", str(config_path)]
    # The child reads secrets from the same environment; nothing secret goes on its command line.
    with open(directory / "watchdog.out", "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if WatchdogLock.is_held(directory) and read_pid(directory) == proc.pid:
            return proc.pid
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None and WatchdogLock.is_held(directory):
        return proc.pid
    if proc.poll() is not None and WatchdogLock.is_held(directory):
        return read_pid(directory) or proc.pid  # lost a race with another starter: that one runs
    raise ConsoleError(f"the watchdog did not start (see {directory / 'watchdog.out'})")


def stop_background(settings: "Settings", *, timeout_s: float = 15.0) -> int:
    """Stop the running watchdog (SIGTERM, then wait); its pid. `WatchdogNotRunning` if none."""
    directory = watchdog_dir(settings)
    pid = read_pid(directory)
    if not WatchdogLock.is_held(directory) or pid is None:
        raise WatchdogNotRunning(f"no watchdog is running for {settings.state_dir}")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not WatchdogLock.is_held(directory):
            return pid
        time.sleep(0.05)
    raise ConsoleError(f"watchdog {pid} did not stop within {timeout_s:g}s", hint=f"kill {pid}")


def ensure_watchdog_running(settings: "Settings", *, config_path: str | os.PathLike[str] | None = None) -> int:
    """Start the watchdog for this state dir unless one runs; its pid. Safe to call after every launch."""
    directory = watchdog_dir(settings)
    if WatchdogLock.is_held(directory):
        return read_pid(directory) or 0
    try:
        return start_background(settings, config_path=config_path)
    except WatchdogRunning:
        return read_pid(directory) or 0


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    _write_text(path, json.dumps(data, default=str, sort_keys=True))

