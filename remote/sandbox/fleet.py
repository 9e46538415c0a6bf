"""The sandbox fleet: keeps one SSH host per live moto instance, and powers hosts off.

It watches moto through boto3 over HTTP, like any other client: every live (pending or
running) instance gets a `SandboxHost`; an instance that is terminated or stopped loses
it, with every process it ran. The EC2 front calls `sync_now` after launch/terminate so
the change is visible before the API call returns; a slow poll catches anything else.

Power-off comes from two places, both ending in a real EC2 API call:

- the host itself: ``shutdown``/``poweroff`` (the stand-ins in ``.sandbox/bin``) write a
  request the fleet picks up within a tick; the instance's
  InstanceInitiatedShutdownBehavior decides stop or terminate, and the state reason is
  ``Client.InstanceInitiatedShutdown`` as on EC2. This is what makes the dead-man switch
  in user-data testable.
- `interrupt` (the fault-injection hook): writes the spot interruption notice to
  ``$RC_SANDBOX_SPOT_NOTICE`` (``<root>/.sandbox/spot/instance-action``, the same JSON
  EC2 serves at ``/latest/meta-data/spot/instance-action``), then terminates the instance
  ``notice_s`` seconds later with state reason ``Server.SpotInstanceTermination``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from remote.sandbox.hosts import SandboxHost

log = logging.getLogger("remote.sandbox.fleet")

_LIVE = ("pending", "running")
SPOT_TERMINATION = ("Server.SpotInstanceTermination", "Server.SpotInstanceTermination: Spot instance termination")
OS_SHUTDOWN = ("Client.InstanceInitiatedShutdown", "Client.InstanceInitiatedShutdown: Instance initiated shutdown")


class Fleet:
    """SSH hosts for moto's instances. All methods except the thread-safe ones run on `loop`."""

    def __init__(
        self,
        sandbox_dir: Path,
        ec2: Any,
        region: str,
        loop: asyncio.AbstractEventLoop,
        publish: Callable[[dict[str, Any]], None],
        *,
        poll_s: float = 2.0,
        tick_s: float = 0.2,
    ) -> None:
        self.sandbox_dir = sandbox_dir
        self.ec2 = ec2
        self.region = region
        self.loop = loop
        self.publish = publish
        self.poll_s = poll_s
        self.tick_s = tick_s
        self.hosts: dict[str, SandboxHost] = {}
        self._power_off_at: dict[str, tuple[float, tuple[str, str]]] = {}
        self._lock = asyncio.Lock()

    # --- thread-safe entry points (called from the EC2 front's request threads) ------------

    def sync_now(self) -> None:
        """Reconcile hosts with moto before returning (at most 20 s)."""
        future = asyncio.run_coroutine_threadsafe(self.reconcile(), self.loop)
        if threading.current_thread() is not getattr(self, "_loop_thread", None):
            future.result(timeout=20)

    def console_output(self, instance_id: str) -> str | None:
        host = self.hosts.get(instance_id)
        return host.console_output() if host else None

    def interrupt(self, instance_id: str, notice_s: float) -> None:
        """Spot interruption: notice now, termination `notice_s` seconds later."""
        host = self.hosts.get(instance_id)
        if host is None:
            raise LookupError(f"no live sandbox instance {instance_id}")
        when = datetime.now(timezone.utc) + timedelta(seconds=notice_s)
        notice = host.root / ".sandbox" / "spot" / "instance-action"
        tmp = notice.with_suffix(".tmp")
        tmp.write_text(json.dumps({"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}))
        os.replace(tmp, notice)
        self.loop.call_soon_threadsafe(self._schedule, instance_id, time.monotonic() + notice_s, SPOT_TERMINATION)

    def endpoints(self) -> dict[str, Any]:
        return {iid: host.endpoint() for iid, host in list(self.hosts.items())}

    # --- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll moto and the hosts' power requests until `stop` is set, then take all hosts down."""
        self._loop_thread = threading.current_thread()
        last_poll = 0.0
        while not stop.is_set():
            if time.monotonic() - last_poll >= self.poll_s:
                last_poll = time.monotonic()
                await self._guarded(self.reconcile())
            await self._guarded(self._power_requests())
            try:
                await asyncio.wait_for(stop.wait(), self.tick_s)
            except TimeoutError:
                pass
        for iid in list(self.hosts):
            await self._take_down(iid)

    async def reconcile(self) -> None:
        """One SSH host per live instance, none for the others."""
        async with self._lock:
            raws = await asyncio.to_thread(self._describe_all)
            live = {r["InstanceId"]: r for r in raws if r.get("State", {}).get("Name") in _LIVE}
            changed = False
            for iid in [i for i in self.hosts if i not in live]:
                await self._take_down(iid)
                changed = True
            for iid, raw in live.items():
                if iid not in self.hosts:
                    await self._boot(raw)
                    changed = True
            if changed:
                self.publish(self.endpoints())

    # --- pieces ------------------------------------------------------------------------

    async def _guarded(self, coro: Any) -> None:
        try:
            await coro
        except Exception:  # the daemon must outlive one bad poll (moto busy, a host failing)
            log.exception("sandbox fleet step failed")

    def _describe_all(self) -> list[dict[str, Any]]:
        pages = self.ec2.get_paginator("describe_instances").paginate()
        return [i for page in pages for r in page.get("Reservations", []) for i in r.get("Instances", [])]

    async def _boot(self, raw: dict[str, Any]) -> None:
        iid = raw["InstanceId"]
        keys, user_data = await asyncio.to_thread(self._boot_material, raw)
        host = SandboxHost(
            iid,
            self.sandbox_dir / "instances" / iid,
            self.sandbox_dir / "hostkeys" / iid,
            public_address=raw.get("PublicIpAddress"),
        )
        await host.start(keys, user_data)
        self.hosts[iid] = host
        log.info("instance %s: SSH on 127.0.0.1:%d", iid, host.port)

    def _boot_material(self, raw: dict[str, Any]) -> tuple[list[str], bytes | None]:
        keys: list[str] = []
        if raw.get("KeyName"):
            try:
                pairs = self.ec2.describe_key_pairs(KeyNames=[raw["KeyName"]], IncludePublicKey=True)
                keys = [p["PublicKey"] for p in pairs.get("KeyPairs", []) if p.get("PublicKey")]
            except Exception:  # key pair deleted since launch: like EC2, the host just has no key
                log.warning("instance %s: key pair %s not found", raw["InstanceId"], raw["KeyName"])
        attr = self.ec2.describe_instance_attribute(InstanceId=raw["InstanceId"], Attribute="userData")
        encoded = (attr.get("UserData") or {}).get("Value")
        return keys, base64.b64decode(encoded) if encoded else None

    async def _take_down(self, iid: str) -> None:
        host = self.hosts.pop(iid, None)
        self._power_off_at.pop(iid, None)
        if host is not None:
            await host.stop()
            log.info("instance %s: SSH endpoint gone", iid)

    def _schedule(self, iid: str, at: float, reason: tuple[str, str]) -> None:
        current = self._power_off_at.get(iid)
        if current is None or at < current[0] or reason == SPOT_TERMINATION:
            self._power_off_at[iid] = (at, reason)

    async def _power_requests(self) -> None:
        now = time.monotonic()
        for iid, host in list(self.hosts.items()):
            host.reap()
            request = host.root / ".sandbox" / "shutdown"
            try:
                when = request.read_text().strip()
                request.unlink()
            except OSError:
                continue
            if when == "cancel":
                if self._power_off_at.get(iid, (0.0, None))[1] == OS_SHUTDOWN:
                    self._power_off_at.pop(iid, None)
                continue
            minutes = float(when[1:]) if when.startswith("+") and when[1:].replace(".", "", 1).isdigit() else 0.0
            self._schedule(iid, now + 60.0 * minutes, OS_SHUTDOWN)
        for iid, (at, reason) in list(self._power_off_at.items()):
            if at <= now:
                self._power_off_at.pop(iid, None)
                await asyncio.to_thread(self._power_off, iid, reason)

    def _power_off(self, iid: str, reason: tuple[str, str]) -> None:
        """Stop or terminate as EC2 would, then record the state reason in moto."""
        code, message = reason
        behaviour = "terminate"
        if reason != SPOT_TERMINATION:
            attr = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior")
            behaviour = (attr.get("InstanceInitiatedShutdownBehavior") or {}).get("Value", "stop")
        disarm = _arm_state_reason(self.region, iid, code, message)
        try:
            if behaviour == "terminate":
                self.ec2.terminate_instances(InstanceIds=[iid])
            else:
                self.ec2.stop_instances(InstanceIds=[iid])
        except Exception:
            disarm()  # still running (termination or stop disabled, say): no reason of a power-off
            raise
        log.info("instance %s: powered off (%s, %s)", iid, behaviour, code)


def _arm_state_reason(region: str, instance_id: str, code: str, message: str) -> Callable[[], None]:
    """Make moto give EC2's reason for the next stop/terminate of this instance.

    No describe, from any thread, sees the new state without this reason: not the empty
    reason moto leaves for a moment, nor moto's "User initiated". The reason shows from the
    arming on, a moment before the state changes: moto's serializer writes an instance's
    StateReason before its State (botocore's member order), so a describe running alongside
    the power-off could otherwise pair the reason read before the change with the state read
    after it. Every reader of a reason looks at it only once the instance has left running.
    Returns what undoes the arming, for a power-off that did not happen.
    """
    # moto has no API for "why did it stop", and its terminate()/stop() always say "User
    # initiated", after the state has already changed. moto's server answers describes on
    # other threads, so setting the reason after the call leaves a window. The daemon hosts
    # moto in-process: this instance object becomes one whose reason, while the armed call
    # runs, reads as the armed one whatever moto has written so far.
    try:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.ec2.models import ec2_backends
        from moto.ec2.models.instances import StateReason

        instance = ec2_backends[DEFAULT_ACCOUNT_ID][region].get_instance(instance_id)
    except Exception:
        log.warning("instance %s: could not record state reason %s", instance_id, code)
        return lambda: None
    armed = StateReason(message, code)
    plain = type(instance)
    if not getattr(plain, "_sandbox_reasons", False):
        # Copy, swap, then drop: the class's property shadows the instance's own attribute from
        # the swap on, so no reader finds the reason missing at any point.
        instance.__dict__["_sandbox_reason"] = instance.__dict__.get("state_reason", StateReason())
        instance.__class__ = _with_sandbox_reasons(plain)
        instance.__dict__.pop("state_reason", None)

    def disarm() -> None:
        for name in ("_sandbox_armed", "terminate", "stop"):
            instance.__dict__.pop(name, None)

    instance.__dict__["_sandbox_armed"] = armed
    for name in ("terminate", "stop"):
        original = getattr(plain, name)

        def with_reason(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            try:
                return _original(instance, *args, **kwargs)
            finally:
                instance.__dict__["_sandbox_reason"] = armed
                instance._reason = message
                disarm()  # one shot: a later stop by the user is the user's

        setattr(instance, name, with_reason)
    return disarm


@functools.cache
def _with_sandbox_reasons(plain: type) -> type:
    """`plain` with a ``state_reason`` that shows an armed reason while it is armed."""

    def get(self: Any) -> Any:
        armed = self.__dict__.get("_sandbox_armed")
        return armed if armed is not None else self.__dict__.get("_sandbox_reason")

    def put(self: Any, value: Any) -> None:
        self.__dict__["_sandbox_reason"] = value

    return type(plain.__name__, (plain,), {"state_reason": property(get, put), "_sandbox_reasons": True})
