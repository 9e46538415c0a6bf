"""Static hosts: GPU boxes the operator owns, listed in the config file, as a `Provider`.

Nothing is rented, so nothing is launched or destroyed: `launch` leases a listed host to
a run (a lease file under the caller's lease directory, created atomically so two runs
never get the same host), `terminate` releases the lease and leaves the machine on.
The same SSH runner works on top, with the key the config names.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar, Sequence

from remote.errors import InstanceNotFound, NoCapacity, ProviderError
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

STATIC_PRICE_SOURCE = "static host (owned)"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$")


@dataclass(frozen=True)
class StaticHost:
    """One host from the config file."""

    name: str
    address: str
    port: int = 22
    user: str = "ubuntu"
    key_path: Path | None = None
    label: str = "static"
    """What the operator calls the machine (e.g. "rtx4090"), shown as its instance type."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"static host name {self.name!r}: letters, digits, '.', '_' or '-' only")
        if not _ADDRESS.match(self.address):
            raise ValueError(f"static host address {self.address!r} is not a host name or IP address")
        if not 0 < self.port < 65536:
            raise ValueError(f"static host port {self.port} is not a TCP port")

    @property
    def instance_id(self) -> str:
        return f"static-{self.name}"


class StaticHostProvider:
    """Hosts from the config as instances; leases stand in for launch and terminate."""

    name = "static"
    capabilities: ClassVar[frozenset[ProviderCapability]] = frozenset({ProviderCapability.IDENTIFIES_BY_MACHINE_ID})

    def __init__(self, hosts: Sequence[StaticHost], *, lease_dir: Path) -> None:
        self.hosts = {h.instance_id: h for h in hosts}
        self.lease_dir = Path(lease_dir)

    def prices(self, instance_types: Sequence[str]) -> list[Price]:
        """Owned machines cost nothing per hour here; one row per host."""
        return [Price(h.label, h.name, None, None, STATIC_PRICE_SOURCE) for h in self.hosts.values()]

    def launch(self, spec: LaunchSpec) -> LaunchOutcome:
        """The host already leased to this run, else the first free one (leased atomically)."""
        for host in self.hosts.values():
            if self._lease_of(host) == spec.run_id:
                return LaunchOutcome(
                    self._instance(host), True, f"reusing {host.name} already leased to run {spec.run_id}"
                )
        self.lease_dir.mkdir(parents=True, exist_ok=True)
        for host in self.hosts.values():
            try:
                fd = os.open(self._lease_path(host), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                raise ProviderError(f"cannot write a lease under {self.lease_dir}: {exc.strerror}") from exc
            with os.fdopen(fd, "w") as fh:
                json.dump({"run_id": spec.run_id, "leased_at": datetime.now(timezone.utc).isoformat()}, fh)
            return LaunchOutcome(self._instance(host), False, f"{host.name} ({host.address}): first free static host")
        raise NoCapacity(
            f"all {len(self.hosts)} static hosts are leased to other runs; "
            "terminate one with `console instance terminate` or add a host to the config",
            tried=tuple(h.name for h in self.hosts.values()),
        )

    def describe(self, instance_id: str) -> Instance:
        host = self.hosts.get(instance_id)
        if host is None:
            raise InstanceNotFound(f"no static host {instance_id} in the config")
        return self._instance(host)

    def list_managed(self) -> list[Instance]:
        """Hosts currently leased to a run."""
        return [self._instance(h) for h in self.hosts.values() if self._lease_of(h) is not None]

    def terminate(self, instance_id: str, *, timeout_s: float = 300.0) -> Instance:
        """Release the lease; the machine itself stays on (it is the operator's)."""
        host = self.hosts.get(instance_id)
        if host is None:
            raise InstanceNotFound(f"no static host {instance_id} in the config")
        self._lease_path(host).unlink(missing_ok=True)
        return self._instance(host)

    def _lease_path(self, host: StaticHost) -> Path:
        return self.lease_dir / f"{host.name}.lease"

    def _lease_of(self, host: StaticHost) -> str | None:
        try:
            return str(json.loads(self._lease_path(host).read_text())["run_id"])
        except (OSError, ValueError, KeyError):
            return None

    def _instance(self, host: StaticHost) -> Instance:
        run_id = self._lease_of(host)
        tags = {MANAGED_BY_TAG: MANAGED_BY_VALUE, RUN_ID_TAG: run_id} if run_id else {}
        return Instance(
            id=host.instance_id,
            state="running" if run_id else "available",
            instance_type=host.label,
            zone=host.name,
            public_address=host.address,
            port=host.port,
            ssh_user=host.user,
            key_path=host.key_path,
            tags=tags,
            lifecycle="static",
            provider=self.name,
        )
