"""Following a training job on a host: its JSON lines become `JobEvent`s, each epoch's
checkpoint leaves the host, and a host that is lost is noticed at once.

`HostWatch` is the sleep the runner waits with while it follows the job's log (between
polls and between reconnect attempts). Every few seconds it asks the pool whether the
provider still has the host, and (while SSH is up, for providers with spot notices)
whether the host has a spot interruption notice; a host the provider no longer reports
running raises `HostLost`, which ends the follow at once instead of after minutes of
reconnecting.

Lines the trainer prints (`training.train`, `training.scheduler`) and what they become::

    {"event": "epoch", "symbol", "epoch", "epochs", "loss", ...}  -> JobEvent kind "epoch" (after the
                                                                    checkpoint is copied off the host)
    {"event": "done", "symbol", "passed", "promoted", ...}       -> kind "done"
    {"event": "error", "symbol", "exit_code", "message"}         -> kind "error"
    anything else                                                -> kind "log"
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from remote.backends.base import EventSink, JobEvent
from remote.backends.ssh.hosts import HostLost, HostPool, SshHost
from remote.backends.ssh.shelf import CheckpointShelf
from remote.ssh import SSHRunner

SPOT_NOTICE_SCRIPT = (
    # The sandbox names its notice file; on EC2 the same JSON is in instance metadata (IMDSv2).
    'if [ -n "${RC_SANDBOX_SPOT_NOTICE:-}" ]; then cat "$RC_SANDBOX_SPOT_NOTICE" 2>/dev/null; '
    "else t=$(curl -s -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "
    "http://169.254.169.254/latest/api/token 2>/dev/null) && "
    'curl -s -f -m 2 -H "X-aws-ec2-metadata-token: $t" '
    "http://169.254.169.254/latest/meta-data/spot/instance-action 2>/dev/null; fi; exit 0"
)
PROGRESS_FIELDS = ("symbol", "epoch", "epochs", "loss", "val_loss", "val_metric", "reward")
"""What a progress event carries (``reward``: a deep-Q agent's episode reward, `training.families.dql`)."""


class Stopped(Exception):
    """The caller asked the follow to stop (``should_stop``); the job itself goes on."""


class HostWatch:
    """The runner's sleep: honours ``should_stop``, and raises `HostLost` once the host is gone."""

    def __init__(
        self,
        pool: HostPool,
        host: SshHost,
        on_event: EventSink,
        job: str,
        *,
        should_stop: Callable[[], bool],
        every_s: float = 2.0,
        notice_every_s: float = 5.0,
    ) -> None:
        self.pool = pool
        self.host = host
        self.on_event = on_event
        self.job = job
        self.should_stop = should_stop
        self.every_s = every_s
        self.notice_every_s = notice_every_s
        self.runner: SSHRunner | None = None
        """Set once the runner exists; used only for the spot notice, only while connected."""
        self.notice: str | None = None
        """The spot interruption notice, once one was seen."""
        self._notices = pool.watches_spot_notices()
        self._last_check = 0.0
        self._last_notice = 0.0
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if self.should_stop():
                raise Stopped(f"stopped following {self.job}")
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, 0.1))
        self.check()

    def check(self, *, force: bool = False) -> None:
        """Ask the pool (at most every ``every_s``, unless ``force``); raise `HostLost`."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_check < (self.every_s if self.notice is None else 0.5):
                self._check_notice(now)
                return
            self._last_check = now
        why = self.pool.lost_reason(self.host)
        if why is not None:
            raise HostLost(self.host.instance_id, why)
        self._check_notice(now)

    def wait_for_loss(self, grace_s: float) -> str | None:
        """After the job died by a signal: give the provider ``grace_s`` to report the host
        gone (a spot notice stretches it); why it is lost, or None when it stays live."""
        deadline = time.monotonic() + (max(grace_s, 150.0) if self.notice else grace_s)
        while True:
            try:
                self.check(force=True)
            except HostLost as lost:
                return lost.why
            if time.monotonic() >= deadline:
                return None
            self(1.0)

    def _check_notice(self, now: float) -> None:
        runner = self.runner
        if not self._notices or self.notice is not None or runner is None or not runner.connected:
            return
        if now - self._last_notice < self.notice_every_s:
            return
        self._last_notice = now
        try:
            text = runner.run(["sh", "-c", SPOT_NOTICE_SCRIPT], timeout_s=10, check=False).output.strip()
        except Exception:  # noqa: BLE001 - a dropped link is the follow loop's to handle
            return
        if '"action"' in text:
            self.notice = text[:200]
            self.on_event(
                JobEvent(
                    self.job,
                    "state",
                    f"spot interruption notice on {self.host.instance_id}",
                    data={"what": "spot_notice", "instance_id": self.host.instance_id, "notice": self.notice},
                )
            )


@dataclass
class Seen:
    """What the backend has seen of a job, across hosts (a replacement continues the count)."""

    epochs: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)


class LineReader:
    """Turns the job's log lines into events, copying each epoch's checkpoint off the host first."""

    def __init__(
        self, job: str, on_event: EventSink, seen: Seen, shelf: CheckpointShelf | None, artifacts: str
    ) -> None:
        self.job = job
        self.on_event = on_event
        self.seen = seen
        self.shelf = shelf
        self.artifacts = artifacts
        self.runner: SSHRunner | None = None

    def __call__(self, line: str) -> None:
        event = _json_object(line)
        kind = event.get("event") if event else None
        symbol = str(event.get("symbol") or "") if event else ""
        if kind == "episode":  # an agent's episode is its epoch (training.families.dql)
            kind = "epoch"
        if kind == "epoch" and self.shelf is not None and self.runner is not None:
            # Copied before the line is passed on: an epoch the operator sees is safe off the host.
            self._shelve(symbol)
        self.on_event(JobEvent(self.job, "log", line, unit=symbol))
        if event is None:
            return
        if kind == "epoch":
            self.seen.epochs[symbol] = event
            self.on_event(
                JobEvent(
                    self.job,
                    "epoch",
                    f"{symbol} epoch {event.get('epoch')}/{event.get('epochs')}",
                    unit=symbol,
                    data={k: event.get(k) for k in PROGRESS_FIELDS},
                )
            )
        elif kind == "done":
            self.seen.done[symbol] = event
        elif kind == "error" and symbol:
            self.on_event(JobEvent(self.job, "error", str(event.get("message") or ""), unit=symbol, data=event))

    def _shelve(self, symbol: str) -> None:
        """Copy the symbol's new checkpoint off the host; a failure waits for the next epoch."""
        assert self.shelf is not None and self.runner is not None
        try:
            epoch = self.shelf.save_from_host(self.runner, self.artifacts, symbol)
        except Exception as exc:  # noqa: BLE001 - never let a copy break the log follow (it would repeat lines)
            self.shelf.log.warning(
                "could not copy %s's checkpoint off the host (%s); trying again at the next epoch", symbol, exc
            )
            return
        if epoch:
            self.shelf.log.info(
                "%s: checkpoint of epoch %d kept in %s",
                symbol,
                epoch,
                f"{self.shelf.store.describe()}{self.shelf.pointer_key(symbol).rsplit('/', 1)[0]}/",
            )


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None
