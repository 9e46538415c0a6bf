"""Notifications through Apprise: runs started and ended, instances launched and terminated
(with their cost), budgets reached and every watchdog action.

URLs come from the settings: ``notify_urls`` (any Apprise URL: ``json://``, ``mailto://``,
``slack://`` ...) plus Telegram, built from ``TELEGRAM_BOT_TOKEN`` and ``TELEGRAM_CHAT_ID``
as in the runbooks. Sending never raises and never blocks a termination: a failure is one
redacted log line. Tokens never reach a log: the token is registered with the redactor and
Apprise's own logger passes through `console.redact.RedactingFilter`.

`EventRelay` turns state-store events into notifications, so whichever process wrote the
event (a headless run, the TUI, a terminate step), the watchdog tells the operator. Its
cursor (last event id, instances already announced) lives in the watchdog directory.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.redact import RedactingFilter, redact, register_secret
from console.state import EventRecord, StateStore

if TYPE_CHECKING:  # pragma: no cover
    from console.settings import Settings

log = logging.getLogger("console.notify")

INFO, SUCCESS, WARNING, FAILURE = "info", "success", "warning", "failure"
"""Apprise notification types."""

RELAY_LOOKBACK_S = 600.0
"""On its first start the relay announces events from the last ten minutes (the run that launched it)."""


def notification_urls(settings: "Settings") -> list[str]:
    """Every Apprise URL the settings name, Telegram first when its token and chat id are set."""
    urls: list[str] = []
    token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else None
    if token and settings.telegram_chat_id:
        register_secret(token)
        urls.append(f"tgram://{token}/{settings.telegram_chat_id}")
    urls.extend(u for u in settings.notify_urls if u)
    return urls


def _quiet_apprise() -> None:
    logger = logging.getLogger("apprise")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())


class Notifier:
    """Sends one-line notifications to every configured URL; does nothing when none is set."""

    def __init__(self, urls: list[str], *, timeout_s: float = 10.0) -> None:
        self._apprise: Any = None
        self.count = 0
        if not urls:
            return
        import apprise

        _quiet_apprise()
        self._apprise = apprise.Apprise()
        for url in urls:
            if not self._apprise.add(url):
                # Never echo the URL: it may hold a token.
                log.warning("notification URL #%d is not one Apprise understands; ignored", urls.index(url) + 1)
        for server in self._apprise:
            # Keep a dead notification service from holding up a watchdog pass for long.
            if hasattr(server, "socket_connect_timeout"):
                server.socket_connect_timeout = min(timeout_s, 4.0)
                server.socket_read_timeout = timeout_s

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Notifier":
        return cls(notification_urls(settings))

    @property
    def enabled(self) -> bool:
        return self._apprise is not None and len(self._apprise) > 0

    def send(self, title: str, body: str, kind: str = INFO) -> bool:
        """Deliver to every URL; True when all accepted it. Never raises; text is redacted."""
        if not self.enabled:
            return False
        title, body = redact(title), redact(body)
        try:
            ok = bool(self._apprise.notify(title=title, body=body, notify_type=kind))
        except Exception as exc:  # a broken notifier must not break the watchdog
            log.warning("notification failed: %s", redact(f"{type(exc).__name__}: {exc}"))
            return False
        self.count += 1
        if not ok:
            log.warning("notification %r was not accepted by every service", title)
        return ok

    # -- the messages, in the operator's words ----------------------------------------------

    def run_started(self, run_id: str, checklist: str, profile: str) -> bool:
        return self.send(f"run {run_id} started", f"{checklist} on the {profile} profile", INFO)

    def run_completed(self, run_id: str, summary: str) -> bool:
        return self.send(f"run {run_id} completed", summary or "all steps finished", SUCCESS)

    def run_failed(self, run_id: str, status: str, summary: str) -> bool:
        return self.send(f"run {run_id} {status}", summary or status, FAILURE)

    def instance_launched(
        self,
        instance_id: str,
        instance_type: str,
        zone: str,
        rate_usd_per_h: float | None,
        source: str,
        run_id: str | None,
    ) -> bool:
        rate = f" at ${rate_usd_per_h:.4f}/h ({source})" if rate_usd_per_h is not None else ""
        return self.send(
            f"instance {instance_id} launched", f"{instance_type} in {zone}{rate} for run {run_id or '(none)'}", INFO
        )

    def instance_terminated(
        self, instance_id: str, reason: str, cost_usd: float | None, hours: float | None, source: str = ""
    ) -> bool:
        cost = f"; cost ${cost_usd:.4f} over {hours:.2f} h" if cost_usd is not None and hours is not None else ""
        label = f" ({source})" if source and cost else ""
        return self.send(f"instance {instance_id} terminated", f"{reason}{cost}{label}", INFO)

    def watchdog_action(self, title: str, body: str, kind: str = WARNING) -> bool:
        return self.send(f"watchdog: {title}", body, kind)


@dataclass
class _Cursor:
    event_id: int
    announced: set[str]


class EventRelay:
    """Forwards new state-store events as notifications; remembers where it stopped."""

    def __init__(self, store: StateStore, notifier: Notifier, cursor_path: Path) -> None:
        self.store = store
        self.notifier = notifier
        self.cursor_path = Path(cursor_path)
        self._cursor = self._load()

    def _load(self) -> _Cursor:
        try:
            data = json.loads(self.cursor_path.read_text())
            return _Cursor(int(data["event_id"]), set(data.get("announced", [])))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        # First start: announce what happened in the last few minutes, not the whole history.
        since = time.time() - RELAY_LOOKBACK_S
        older = [e for e in self.store.events(limit=100_000) if e.ts < since]
        return _Cursor(older[-1].id if older else 0, set())

    def _save(self) -> None:
        tmp = self.cursor_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"event_id": self._cursor.event_id, "announced": sorted(self._cursor.announced)[-500:]})
        )
        os.replace(tmp, self.cursor_path)

    def _first(self, key: str) -> bool:
        """True the first time `key` is seen (kept across restarts): each fact is told once."""
        if key in self._cursor.announced:
            return False
        self._cursor.announced.add(key)
        self._save()
        return True

    def announce_launch(self, instance_id: str, **details: Any) -> bool:
        """Announce an instance once (whoever notices it first: the launch event or the watchdog)."""
        if not self._first(f"launched:{instance_id}"):
            return False
        self.notifier.instance_launched(instance_id, **details)
        return True

    def pump(self) -> int:
        """Send a notification for every new event that warrants one; returns how many were sent."""
        sent = 0
        events = self.store.events(after_id=self._cursor.event_id, limit=1000)
        for event in events:
            if self._send_for(event):
                sent += 1
            self._cursor.event_id = event.id
        if events:
            self._save()
        return sent

    def _send_for(self, event: EventRecord) -> bool:
        n = self.notifier
        kind = event.kind
        if kind == "run.running":
            run = self.store.get_run(event.run_id or "")
            return n.run_started(event.run_id or "?", run.checklist if run else "?", run.profile if run else "?")
        if kind == "run.succeeded":
            return n.run_completed(event.run_id or "?", event.message)
        if kind in ("run.failed", "run.blocked", "run.cancelled"):
            return n.run_failed(event.run_id or "?", kind.split(".", 1)[1], event.message)
        if kind == "instance.launched":
            d = event.data
            instance_id = str(d.get("instance_id") or "")
            if not instance_id:
                return False
            rate = d.get("spot_usd_per_hour")
            return self.announce_launch(
                instance_id,
                instance_type=str(d.get("instance_type") or "?"),
                zone=str(d.get("zone") or "?"),
                rate_usd_per_h=float(rate) if rate is not None else None,
                source=str(d.get("source") or ""),
                run_id=event.run_id,
            )
        if kind == "instance.terminated":
            from console.cost import instance_cost

            instance_id = str(event.data.get("instance_id", ""))
            # The store and the terminate step may both record it: tell the operator once.
            if not instance_id or not self._first(f"terminated:{instance_id}"):
                return False
            record = next((r for r in self.store.instances() if r.id == instance_id), None)
            line = instance_cost(self.store, record) if record is not None else None
            reason = event.message.split(": ", 1)[1] if ": " in event.message else event.message
            return n.instance_terminated(
                instance_id,
                reason,
                line.cost_usd if line else None,
                line.hours if line else None,
                line.source if line else "",
            )
        if kind == "engine.symbol_failed":  # the per-coin engine: each coin that failed or was skipped
            return n.send(f"engine: {event.data.get('symbol', '?')} {event.data.get('state', 'failed')}", event.message,
                          FAILURE)  # fmt: skip
        if kind.startswith("watchdog.") or kind.startswith("budget."):
            failure = kind.endswith(("failed", "unconfirmed"))
            return n.watchdog_action(
                kind.split(".", 1)[1].replace("_", " "), event.message, FAILURE if failure else WARNING
            )
        return False
