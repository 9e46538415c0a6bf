"""The provider protocol and the typed records that go in and out of it.

A provider is anything that can rent (or lend) a machine the console trains on. It has
exactly five verbs, the same for EC2 spot, a static GPU box, and whatever comes next::

    prices(instance_types)  -> list[Price]       what a machine costs, per zone
    launch(spec)            -> LaunchOutcome     get a machine for a run (idempotent per run)
    describe(instance_id)   -> Instance          what it is doing now
    list_managed()          -> list[Instance]    every machine the console is responsible for
    terminate(instance_id)  -> Instance          give it back, and confirm it is gone

Records are frozen dataclasses so they can be logged, compared and stored as they are.
Errors are `remote.errors.ProviderError` subclasses with a one-line message.

What a provider can do beyond the verbs is declared as `ProviderCapability` values in its
``capabilities`` and checked before anything relies on it (SkyPilot's
``CloudImplementationFeatures``); the console never branches on a provider's name.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Mapping, Protocol, Sequence, runtime_checkable

MANAGED_BY_TAG = "managed-by"
"""Tag key on every resource the console creates; its value is `MANAGED_BY_VALUE`."""
MANAGED_BY_VALUE = "retrain-console"
RUN_ID_TAG = "run-id"
ATTEMPT_TAG = "step-attempt"
OWNER_TAG = "owner"
CREATED_AT_TAG = "created-at"
MAX_RUNTIME_TAG = "max-runtime-minutes"
BUDGET_TAG = "budget-usd"

DEFAULT_INSTANCE_TYPE = "g5.xlarge"
DEFAULT_ALTERNATIVE_TYPES = ("g4dn.xlarge",)
DEFAULT_AMI_NAME_PATTERN = "Deep Learning OSS Nvidia Driver AMI GPU PyTorch * (Ubuntu 22.04) *"
"""The AWS Deep Learning AMI (PyTorch, Ubuntu 22.04); the newest match is used."""
DEFAULT_AMI_OWNERS = ("amazon",)

LIVE_STATES = frozenset({"pending", "running"})
"""States in which an instance costs money and can be reused by a run."""

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")


def check_run_id(value: str) -> str:
    """A run id safe in tags, file names and resource names; anything else is refused."""
    if not isinstance(value, str) or not _RUN_ID.match(value):
        raise ValueError(f"{value!r} is not a run id (letters, digits, '.', '_' or '-', at most 64)")
    return value


def check_instance_type(value: str) -> str:
    """An instance type name such as g5.xlarge (the format only; the cloud says if it exists)."""
    if not isinstance(value, str) or not _INSTANCE_TYPE.match(value):
        raise ValueError(f"{value!r} is not an instance type name like g5.xlarge")
    return value


class ProviderCapability(str, enum.Enum):
    """What a provider does beyond the five verbs; asked instead of provider names."""

    RENTS_MACHINES = "rents-machines"
    """`launch` starts a new machine and `terminate` destroys it, so a lost one is replaced by
    launching again. Without it the provider lends machines it does not own (static hosts):
    `launch` leases one to the run and `terminate` gives the lease back, the machine stays on."""
    DEAD_MAN_SWITCH = "dead-man-switch"
    """Machines run the launch spec's user-data at boot, so each carries its own dead-man
    switch (`remote.deadman`) that the console keeps fed while it drives the run."""
    SPOT_NOTICES = "spot-notices"
    """A machine can be reclaimed, with a notice on the machine first (EC2 spot's instance
    metadata; the sandbox's notice file)."""
    PUBLISHES_HOST_KEYS = "publishes-host-keys"
    """The provider publishes a machine's SSH host keys out of band (EC2's console output):
    `HostKeyPublisher.host_key_publication` is the trusted text the first connection pins from."""
    IDENTIFIES_BY_MACHINE_ID = "identifies-by-machine-id"
    """A machine proves who it is to the training guard by its ``/etc/machine-id`` (static
    hosts), not by the provider's instance id."""


@dataclass(frozen=True)
class Price:
    """What one instance type costs in one zone, right now, and where the figure came from."""

    instance_type: str
    zone: str
    spot_usd_per_hour: float | None
    """Latest spot price; None when the zone has no spot history for the type."""
    on_demand_usd_per_hour: float | None
    """On-demand price for comparison; None when unknown."""
    source: str
    """Where the figures come from, shown next to them: "sandbox table" or "aws"."""
    observed_at: datetime | None = None

    @property
    def saving(self) -> float | None:
        """Fraction saved by spot over on-demand (0.7 = 70 % cheaper), None if unknown."""
        if not self.spot_usd_per_hour or not self.on_demand_usd_per_hour:
            return None
        return 1.0 - self.spot_usd_per_hour / self.on_demand_usd_per_hour


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a launch needs. One spec per run; the run id makes launch idempotent."""

    run_id: str
    owner: str
    ssh_cidr: str
    """The operator's address in CIDR form (e.g. 203.0.113.7/32): the only one SSH admits."""
    instance_type: str = DEFAULT_INSTANCE_TYPE
    alternative_types: tuple[str, ...] = DEFAULT_ALTERNATIVE_TYPES
    """Tried, in order, when the wanted type has no capacity in any zone."""
    zones: tuple[str, ...] = ()
    """Zones to consider; empty means every zone of the region that offers the type."""
    max_price_usd_per_hour: float | None = None
    """Spot max price; None means the on-demand price (AWS's own default)."""
    max_runtime_minutes: int = 240
    budget_usd: float = 10.0
    user_data: str = ""
    """Script run at first boot (the dead-man switch lives here)."""
    ami_id: str | None = None
    """An explicit image; when None the newest image matching `ami_name_pattern` is used."""
    ami_name_pattern: str = DEFAULT_AMI_NAME_PATTERN
    ami_owners: tuple[str, ...] = DEFAULT_AMI_OWNERS
    ssh_user: str = "ubuntu"
    attempt: int = 1
    """The launch step's attempt number, recorded as a tag."""
    volume_gb: int | None = None

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        for name in (self.instance_type, *self.alternative_types):
            check_instance_type(name)
        if self.max_runtime_minutes <= 0 or self.budget_usd <= 0:
            raise ValueError("max_runtime_minutes and budget_usd must be positive")

    @property
    def instance_types(self) -> tuple[str, ...]:
        """The wanted type first, then the alternatives, without repeats."""
        return tuple(dict.fromkeys((self.instance_type, *self.alternative_types)))


@dataclass(frozen=True)
class Instance:
    """One machine as the provider sees it."""

    id: str
    state: str
    """pending, running, shutting-down, terminated, stopping, stopped (EC2 words)."""
    instance_type: str
    zone: str
    public_address: str | None
    """Where SSH reaches it (public IP or DNS name); None until it has one."""
    port: int = 22
    ssh_user: str = "ubuntu"
    key_path: Path | None = None
    """The private key for SSH, stored 0600 under the caller's key directory."""
    launched_at: datetime | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    lifecycle: str = "spot"
    """spot, on-demand, or static."""
    spot_max_usd_per_hour: float | None = None
    spot_usd_per_hour: float | None = None
    """The spot price of its type and zone when it was launched (or looked at)."""
    state_reason: str | None = None
    """Why it is in its state, e.g. ``Server.SpotInstanceTermination``."""
    provider: str = "ec2"

    @property
    def run_id(self) -> str | None:
        return self.tags.get(RUN_ID_TAG)

    @property
    def is_live(self) -> bool:
        """True while it is pending or running (costing money)."""
        return self.state in LIVE_STATES


@dataclass(frozen=True)
class LaunchAttempt:
    """One zone/type the launch tried, and what happened."""

    instance_type: str
    zone: str
    outcome: str
    """"launched", or the provider's refusal code (InsufficientInstanceCapacity, ...)."""

    def __str__(self) -> str:
        return f"{self.instance_type} in {self.zone}: {self.outcome}"


@dataclass(frozen=True)
class LaunchOutcome:
    """What `Provider.launch` did: the instance, whether it was reused, and why this one."""

    instance: Instance
    reused: bool
    reason: str
    """One line for the operator: which zone/type and why (price, capacity, reuse)."""
    attempts: tuple[LaunchAttempt, ...] = ()


@runtime_checkable
class Provider(Protocol):
    """The five verbs every provider offers. Implementations raise `ProviderError`s only."""

    name: str
    capabilities: ClassVar[frozenset[ProviderCapability]]

    def prices(self, instance_types: Sequence[str]) -> list[Price]:
        """Spot and on-demand price per zone for each type, cheapest spot first."""
        ...

    def launch(self, spec: LaunchSpec) -> LaunchOutcome:
        """A running (or pending) instance for `spec.run_id`: an existing live one, or a new one."""
        ...

    def describe(self, instance_id: str) -> Instance:
        """The instance as it is now; `InstanceNotFound` if there is no such instance."""
        ...

    def list_managed(self) -> list[Instance]:
        """Every instance carrying the console's managed-by tag that is not terminated."""
        ...

    def terminate(self, instance_id: str, *, timeout_s: float = 300.0) -> Instance:
        """Terminate and wait until the provider confirms it; `TerminateUnconfirmed` if not in time."""
        ...


@runtime_checkable
class HostKeyPublisher(Protocol):
    """A provider with `ProviderCapability.PUBLISHES_HOST_KEYS`."""

    def host_key_publication(self, instance_id: str) -> str:
        """Trusted text listing the machine's SSH host keys ("" until there is some)."""
        ...
