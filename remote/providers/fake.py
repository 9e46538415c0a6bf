"""A fake provider that ships with the package: machines are directories on this machine.

It keeps the `Provider` contract for real -- launch is idempotent by the run's tag, a
terminated machine stays terminated, a reclaimed one (`FakeProvider.reclaim`: a spot
interruption) is gone with a reason -- and `FakeProvider.runner` gives a
`remote.local.LocalRunner` on a machine's directory, whose commands carry
``RC_SANDBOX_INSTANCE_ID`` as a sandbox host's do. So everything above a provider and a
runner (the instances service, delta sync, the ``ssh`` backend, the watchdog's rules,
benches) runs its real code with no cloud, no SSH and no daemon.

State is one JSON file under ``root`` (rewritten atomically), so separate processes see
the same machines.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Sequence

from remote.errors import InstanceNotFound
from remote.local import LocalRunner, LocalTarget
from remote.providers.base import (
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    RUN_ID_TAG,
    Instance,
    LaunchOutcome,
    LaunchSpec,
    Price,
    ProviderCapability,
)

FAKE_PRICE_SOURCE = "fake table"
FAKE_SPOT_USD_PER_HOUR = 0.1
FAKE_ZONE = "fake-1a"
LIVE = ("pending", "running")


class FakeProvider:
    """Machines as directories under ``root`` (see the module docstring)."""

    name: ClassVar[str] = "fake"
    capabilities: ClassVar[frozenset[ProviderCapability]] = frozenset(
        {ProviderCapability.RENTS_MACHINES, ProviderCapability.SPOT_NOTICES}
    )

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    # --- the five verbs ------------------------------------------------------------------

    def prices(self, instance_types: Sequence[str]) -> list[Price]:
        return [
            Price(t, FAKE_ZONE, FAKE_SPOT_USD_PER_HOUR, 3 * FAKE_SPOT_USD_PER_HOUR, FAKE_PRICE_SOURCE)
            for t in dict.fromkeys(instance_types)
        ]

    def launch(self, spec: LaunchSpec) -> LaunchOutcome:
        """The run's live machine, else a new directory tagged with the run."""
        with self._lock:
            machines = self._read()
            for iid, m in machines.items():
                if m["tags"].get(RUN_ID_TAG) == spec.run_id and m["state"] in LIVE:
                    return LaunchOutcome(self._instance(iid, m), True, f"reusing {iid} of run {spec.run_id}")
            iid = "fake-" + secrets.token_hex(6)
            machines[iid] = {
                "state": "running",
                "type": spec.instance_type,
                "reason": None,
                "launched_at": datetime.now(timezone.utc).isoformat(),
                "tags": {MANAGED_BY_TAG: MANAGED_BY_VALUE, RUN_ID_TAG: spec.run_id, "owner": spec.owner},
            }
            self._boot(iid)
            self._write(machines)
            return LaunchOutcome(self._instance(iid, machines[iid]), False, f"{iid}: a fake {spec.instance_type}")

    def describe(self, instance_id: str) -> Instance:
        machines = self._read()
        if instance_id not in machines:
            raise InstanceNotFound(f"no fake machine {instance_id}")
        return self._instance(instance_id, machines[instance_id])

    def list_managed(self) -> list[Instance]:
        return [self._instance(iid, m) for iid, m in self._read().items() if m["state"] != "terminated"]

    def terminate(self, instance_id: str, *, timeout_s: float = 300.0) -> Instance:
        return self._end(instance_id, "terminated", None)

    # --- what the fake adds -----------------------------------------------------------------

    def reclaim(self, instance_id: str) -> Instance:
        """A spot interruption: the notice on the machine, then it is terminated by the "cloud"."""
        notice = self._bin(instance_id).parent / "instance-action"
        notice.write_text(json.dumps({"action": "terminate", "time": datetime.now(timezone.utc).isoformat()}))
        return self._end(instance_id, "terminated", "Server.SpotInstanceTermination")

    def runner(self, instance_id: str) -> LocalRunner:
        """A runner on the machine's directory: its commands say which machine they run on, and
        ``python3`` is this interpreter (the machine stands in for one with the libraries)."""
        self.describe(instance_id)
        env = {
            "RC_SANDBOX_INSTANCE_ID": instance_id,
            "RC_SANDBOX_SPOT_NOTICE": str(self._bin(instance_id).parent / "instance-action"),
            "PATH": f"{self._bin(instance_id)}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }
        return LocalRunner(LocalTarget(instance_id, self.root / instance_id, env=env))

    # --- pieces ------------------------------------------------------------------------------

    def _bin(self, instance_id: str) -> Path:
        return self.root / instance_id / ".fake" / "bin"

    def _boot(self, instance_id: str) -> None:
        bin_dir = self._bin(instance_id)
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name in ("python3", "python"):
            shim = bin_dir / name
            shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
            shim.chmod(0o755)

    def _end(self, instance_id: str, state: str, reason: str | None) -> Instance:
        with self._lock:
            machines = self._read()
            if instance_id not in machines:
                raise InstanceNotFound(f"no fake machine {instance_id}")
            if machines[instance_id]["state"] != "terminated":
                machines[instance_id].update(state=state, reason=reason)
                self._write(machines)
            return self._instance(instance_id, machines[instance_id])

    def _instance(self, iid: str, m: dict[str, Any]) -> Instance:
        return Instance(
            id=iid,
            state=m["state"],
            instance_type=m["type"],
            zone=FAKE_ZONE,
            public_address=str(self.root / iid),
            port=0,
            ssh_user="fake",
            launched_at=datetime.fromisoformat(m["launched_at"]),
            tags=dict(m["tags"]),
            spot_usd_per_hour=FAKE_SPOT_USD_PER_HOUR,
            state_reason=m["reason"],
            provider=self.name,
        )

    def _state_file(self) -> Path:
        return self.root / "machines.json"

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._state_file().read_text())
        except FileNotFoundError:
            return {}
        return dict(data) if isinstance(data, dict) else {}

    def _write(self, machines: dict[str, dict[str, Any]]) -> None:
        tmp = self._state_file().with_name(f".machines.{os.getpid()}.{secrets.token_hex(3)}.tmp")
        tmp.write_text(json.dumps(machines, sort_keys=True))
        os.replace(tmp, self._state_file())
