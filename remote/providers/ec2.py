"""EC2 spot instances through boto3: the first `Provider`.

The same code drives AWS and the sandbox's moto server (only `AwsTarget` differs).
`launch` is idempotent per run: it first looks for a live instance tagged with the run
id and reuses it, so a console killed mid-launch never pays for a second GPU. New
instances are one-time spot requests (RunInstances with spot market options, so
`InstanceInitiatedShutdownBehavior=terminate` applies and capacity errors come back
synchronously), tried zone by zone from the cheapest, then on the alternative type.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

from remote.errors import (
    InstanceNotFound,
    NoAmiFound,
    NoCapacity,
    ProviderError,
    TerminateUnconfirmed,
    UnknownInstanceType,
)
from remote.providers import keys
from remote.providers.aws_client import AwsTarget, call, check_region, make_client
from remote.providers.base import (
    ATTEMPT_TAG,
    BUDGET_TAG,
    CREATED_AT_TAG,
    LIVE_STATES,
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    MAX_RUNTIME_TAG,
    OWNER_TAG,
    RUN_ID_TAG,
    Instance,
    LaunchAttempt,
    LaunchOutcome,
    LaunchSpec,
    Price,
    ProviderCapability,
    check_instance_type,
)
from remote.providers.ec2_access import Ec2Access, ec2_tags

AWS_ON_DEMAND_USD_PER_HOUR: Mapping[str, float] = {
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g6.xlarge": 0.805,
    "p3.2xlarge": 3.06,
}
"""On-demand Linux list prices (us-east-1, USD/hour) for comparison; unknown types show none."""

CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "SpotMaxPriceTooLow",
        "Unsupported",
        "InsufficientFreeAddressesInSubnet",
        "InstanceLimitExceeded",
        "MaxSpotInstanceCountExceeded",
    }
)
"""Refusals that mean "not here, not now": the launch moves on to the next zone or type."""

SPOT_PRICE_TAG = "spot-usd-per-hour"
SPOT_MAX_TAG = "spot-max-usd-per-hour"
_NOT_TERMINATED = ["pending", "running", "shutting-down", "stopping", "stopped"]


class Ec2SpotProvider(Ec2Access):
    """EC2 spot through boto3. Raises only `remote.errors.ProviderError` subclasses."""

    name = "ec2"
    capabilities: ClassVar[frozenset[ProviderCapability]] = frozenset(
        {
            ProviderCapability.RENTS_MACHINES,
            ProviderCapability.DEAD_MAN_SWITCH,
            ProviderCapability.SPOT_NOTICES,
            ProviderCapability.PUBLISHES_HOST_KEYS,
        }
    )

    def __init__(
        self,
        target: AwsTarget,
        *,
        key_dir: Path,
        price_source: str = "aws",
        on_demand_usd_per_hour: Mapping[str, float] = AWS_ON_DEMAND_USD_PER_HOUR,
        poll_interval_s: float = 2.0,
        check_region_name: bool = True,
    ) -> None:
        """`key_dir` receives private keys (0600); `price_source` labels every `Price`."""
        if check_region_name:
            check_region(target.region)
        self.target = target
        self.key_dir = Path(key_dir)
        self.price_source = price_source
        self.on_demand = dict(on_demand_usd_per_hour)
        self.poll_interval_s = poll_interval_s
        self._client: Any = None

    # --- the five verbs -------------------------------------------------------------

    def prices(self, instance_types: Sequence[str]) -> list[Price]:
        """Latest spot price per zone offering each type, with on-demand; cheapest first."""
        types = [check_instance_type(t) for t in dict.fromkeys(instance_types)]
        self._check_types_exist(types)
        offered = self._zones_offering(types)
        latest: dict[tuple[str, str], tuple[float, datetime | None]] = {}
        paginator = self._ec2.get_paginator("describe_spot_price_history")
        pages = call(
            self.target,
            "DescribeSpotPriceHistory",
            lambda **kw: list(paginator.paginate(**kw)),
            InstanceTypes=types,
            ProductDescriptions=["Linux/UNIX"],
            StartTime=datetime.now(timezone.utc),
        )
        for page in pages:
            for row in page.get("SpotPriceHistory", []):
                key = (row["InstanceType"], row["AvailabilityZone"])
                stamp = row.get("Timestamp")
                if key not in latest or (stamp and latest[key][1] and stamp > latest[key][1]):
                    latest[key] = (float(row["SpotPrice"]), stamp)
        prices = []
        for itype in types:
            for zone in offered.get(itype, []):
                spot, stamp = latest.get((itype, zone), (None, None))
                prices.append(Price(itype, zone, spot, self.on_demand.get(itype), self.price_source, stamp))
        return sorted(
            prices, key=lambda p: (p.spot_usd_per_hour is None, p.spot_usd_per_hour or 0.0, p.instance_type, p.zone)
        )

    def launch(self, spec: LaunchSpec) -> LaunchOutcome:
        """The run's live instance if there is one, else a new one-time spot instance."""
        existing = self._live_instances_of_run(spec.run_id)
        if existing:
            inst = existing[0]
            if inst.key_path is None:
                raise ProviderError(
                    f"instance {inst.id} of run {spec.run_id} is live but its private key is missing "
                    f"under {self.key_dir}; terminate it with `console instance terminate {inst.id}`"
                )
            return LaunchOutcome(
                inst,
                True,
                f"reusing {inst.id} ({inst.instance_type} in {inst.zone}, "
                f"{inst.state}) already launched for run {spec.run_id}",
            )
        prices = self.prices(spec.instance_types)
        image_id = spec.ami_id or self._newest_ami(spec.ami_name_pattern, spec.ami_owners)
        key_name = self._ensure_key_pair(spec.run_id)
        group_id = self._ensure_security_group(spec.run_id, spec.ssh_cidr)
        attempts: list[LaunchAttempt] = []
        for itype in spec.instance_types:
            max_price = spec.max_price_usd_per_hour or self.on_demand.get(itype)
            for price in self._zone_order(prices, itype, spec.zones):
                if (
                    max_price is not None
                    and price.spot_usd_per_hour is not None
                    and price.spot_usd_per_hour > max_price
                ):
                    attempts.append(
                        LaunchAttempt(
                            itype, price.zone, f"spot ${price.spot_usd_per_hour:.4f}/h above max ${max_price:.4f}/h"
                        )
                    )
                    continue
                try:
                    raw = self._run_instance(spec, itype, price, max_price, image_id, key_name, group_id)
                except ProviderError as exc:
                    if exc.code not in CAPACITY_CODES:
                        raise
                    attempts.append(LaunchAttempt(itype, price.zone, exc.code or "refused"))
                    continue
                attempts.append(LaunchAttempt(itype, price.zone, "launched"))
                inst = self._to_instance(raw)
                return LaunchOutcome(inst, False, _why(price, attempts), tuple(attempts))
        tried = tuple(str(a) for a in attempts)
        raise NoCapacity(
            f"no spot capacity for {' or '.join(spec.instance_types)} in {self.target.region} "
            f"(tried {len(tried)}: {'; '.join(tried) or 'no zone offers it'}); "
            "try later, another region or a higher max price",
            tried=tried,
        )

    def describe(self, instance_id: str) -> Instance:
        """The instance now; `InstanceNotFound` when EC2 does not know it."""
        out = call(self.target, "DescribeInstances", self._ec2.describe_instances, InstanceIds=[instance_id])
        raws = [i for r in out.get("Reservations", []) for i in r.get("Instances", [])]
        if not raws:
            raise InstanceNotFound(f"no such instance {instance_id}")
        return self._to_instance(raws[0])

    def list_managed(self) -> list[Instance]:
        """Every not-terminated instance tagged managed-by=retrain-console, oldest first."""
        found = self._describe_filtered(
            [
                {"Name": f"tag:{MANAGED_BY_TAG}", "Values": [MANAGED_BY_VALUE]},
                {"Name": "instance-state-name", "Values": _NOT_TERMINATED},
            ]
        )
        return sorted(found, key=lambda i: (i.launched_at or datetime.min.replace(tzinfo=timezone.utc), i.id))

    def terminate(self, instance_id: str, *, timeout_s: float = 300.0) -> Instance:
        """Terminate, then poll until EC2 reports `terminated`; cleans up the run's SSH group."""
        inst = self.describe(instance_id)
        if inst.state != "terminated":
            call(self.target, "TerminateInstances", self._ec2.terminate_instances, InstanceIds=[instance_id])
            deadline = time.monotonic() + timeout_s
            while True:
                inst = self.describe(instance_id)
                if inst.state == "terminated":
                    break
                if time.monotonic() >= deadline:
                    raise TerminateUnconfirmed(
                        f"instance {instance_id} is still {inst.state} {timeout_s:.0f}s after terminate; "
                        f"run `console instance terminate {instance_id}` again or check the EC2 console"
                    )
                time.sleep(self.poll_interval_s)
        if inst.run_id and not self._live_instances_of_run(inst.run_id):
            self._delete_security_group_quietly(inst.run_id)
        return inst

    # --- beyond the protocol -------------------------------------------------------

    def console_output(self, instance_id: str) -> str:
        """The instance's console text ("" until EC2 has some: a few minutes after boot on AWS).

        cloud-init prints the SSH host keys there; it is the trusted publication the SSH
        runner pins the host key from (`remote.hostkeys.parse_publication`).
        """
        out = call(self.target, "GetConsoleOutput", self._ec2.get_console_output, InstanceId=instance_id, Latest=True)
        return str(out.get("Output") or "")

    def host_key_publication(self, instance_id: str) -> str:
        """`ProviderCapability.PUBLISHES_HOST_KEYS`: the console output, where cloud-init lists them."""
        return self.console_output(instance_id)

    # --- launch pieces --------------------------------------------------------------

    @property
    def _ec2(self) -> Any:
        if self._client is None:
            self._client = make_client("ec2", self.target)
        return self._client

    def _check_types_exist(self, types: list[str]) -> None:
        try:
            call(self.target, "DescribeInstanceTypes", self._ec2.describe_instance_types, InstanceTypes=types)
        except ProviderError as exc:
            if exc.code in ("InvalidInstanceType", "InvalidParameterValue"):
                raise UnknownInstanceType(
                    f"unknown instance type among {', '.join(types)} in {self.target.region} "
                    "(for example g5.xlarge or g4dn.xlarge)"
                ) from exc
            raise

    def _zones_offering(self, types: list[str]) -> dict[str, list[str]]:
        out = call(
            self.target,
            "DescribeInstanceTypeOfferings",
            self._ec2.describe_instance_type_offerings,
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": types}],
        )
        zones: dict[str, list[str]] = {}
        for row in out.get("InstanceTypeOfferings", []):
            zones.setdefault(row["InstanceType"], []).append(row["Location"])
        return {t: sorted(z) for t, z in zones.items()}

    @staticmethod
    def _zone_order(prices: list[Price], itype: str, zones: tuple[str, ...]) -> list[Price]:
        """The type's zones, cheapest first (as `prices` sorts them; unpriced zones last)."""
        return [p for p in prices if p.instance_type == itype and (not zones or p.zone in zones)]

    def _newest_ami(self, pattern: str, owners: tuple[str, ...]) -> str:
        out = call(
            self.target,
            "DescribeImages",
            self._ec2.describe_images,
            Owners=list(owners),
            Filters=[
                {"Name": "name", "Values": [pattern]},
                {"Name": "state", "Values": ["available"]},
                # g4dn/g5 are x86_64; a broad pattern must not pick an ARM image.
                {"Name": "architecture", "Values": ["x86_64"]},
            ],
        )
        images = sorted(out.get("Images", []), key=lambda i: str(i.get("CreationDate", "")), reverse=True)
        if not images:
            raise NoAmiFound(
                f"no machine image named like {pattern!r} owned by {', '.join(owners)} "
                f"in {self.target.region}; set the AMI pattern or id in the config"
            )
        return str(images[0]["ImageId"])

    def _run_instance(
        self,
        spec: LaunchSpec,
        itype: str,
        price: Price,
        max_price: float | None,
        image_id: str,
        key_name: str,
        group_id: str,
    ) -> dict[str, Any]:
        tags = {
            "Name": f"retrain-console {spec.run_id}",
            MANAGED_BY_TAG: MANAGED_BY_VALUE,
            RUN_ID_TAG: spec.run_id,
            ATTEMPT_TAG: str(spec.attempt),
            OWNER_TAG: spec.owner,
            CREATED_AT_TAG: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            MAX_RUNTIME_TAG: str(spec.max_runtime_minutes),
            BUDGET_TAG: f"{spec.budget_usd:.2f}",
        }
        if price.spot_usd_per_hour is not None:
            tags[SPOT_PRICE_TAG] = f"{price.spot_usd_per_hour:.4f}"
        spot_options: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
        if max_price is not None:
            spot_options["MaxPrice"] = f"{max_price:.4f}"
            tags[SPOT_MAX_TAG] = f"{max_price:.4f}"
        kwargs: dict[str, Any] = dict(
            ImageId=image_id,
            InstanceType=itype,
            MinCount=1,
            MaxCount=1,
            KeyName=key_name,
            SecurityGroupIds=[group_id],
            UserData=spec.user_data,
            InstanceInitiatedShutdownBehavior="terminate",
            Placement={"AvailabilityZone": price.zone},
            InstanceMarketOptions={"MarketType": "spot", "SpotOptions": spot_options},
            MetadataOptions={"HttpTokens": "required"},
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": ec2_tags(tags)},
                {
                    "ResourceType": "volume",
                    "Tags": ec2_tags({MANAGED_BY_TAG: MANAGED_BY_VALUE, RUN_ID_TAG: spec.run_id}),
                },
            ],
        )
        if spec.volume_gb:
            kwargs["BlockDeviceMappings"] = [
                {
                    "DeviceName": "/dev/sda1",
                    "Ebs": {"VolumeSize": spec.volume_gb, "VolumeType": "gp3", "DeleteOnTermination": True},
                }
            ]
        out = call(self.target, "RunInstances", self._ec2.run_instances, **kwargs)
        return out["Instances"][0]

    def _live_instances_of_run(self, run_id: str) -> list[Instance]:
        return self._describe_filtered(
            [
                {"Name": f"tag:{MANAGED_BY_TAG}", "Values": [MANAGED_BY_VALUE]},
                {"Name": f"tag:{RUN_ID_TAG}", "Values": [run_id]},
                {"Name": "instance-state-name", "Values": sorted(LIVE_STATES)},
            ]
        )

    def _describe_filtered(self, filters: list[dict[str, Any]]) -> list[Instance]:
        paginator = self._ec2.get_paginator("describe_instances")
        pages = call(self.target, "DescribeInstances", lambda **kw: list(paginator.paginate(**kw)), Filters=filters)
        return [
            self._to_instance(i) for page in pages for r in page.get("Reservations", []) for i in r.get("Instances", [])
        ]

    def _to_instance(self, raw: Mapping[str, Any]) -> Instance:
        tags = {t["Key"]: t["Value"] for t in raw.get("Tags", []) or []}
        key_name = raw.get("KeyName")
        key_path = keys.key_path_for(self.key_dir, key_name) if key_name else None
        reason = (raw.get("StateReason") or {}).get("Code") or None
        return Instance(
            id=raw["InstanceId"],
            state=raw.get("State", {}).get("Name", "unknown"),
            instance_type=raw.get("InstanceType", ""),
            zone=(raw.get("Placement") or {}).get("AvailabilityZone", ""),
            public_address=raw.get("PublicIpAddress") or raw.get("PublicDnsName") or None,
            port=22,
            ssh_user=tags.get("ssh-user", "ubuntu"),
            key_path=key_path if key_path is not None and key_path.exists() else None,
            launched_at=raw.get("LaunchTime"),
            tags=tags,
            lifecycle=raw.get("InstanceLifecycle") or "on-demand",
            spot_max_usd_per_hour=_float(tags.get(SPOT_MAX_TAG)),
            spot_usd_per_hour=_float(tags.get(SPOT_PRICE_TAG)),
            state_reason=reason,
            provider=self.name,
        )


def _why(chosen: Price, attempts: list[LaunchAttempt]) -> str:
    spot = f"${chosen.spot_usd_per_hour:.4f}/h spot" if chosen.spot_usd_per_hour is not None else "spot"
    od = f", on-demand ${chosen.on_demand_usd_per_hour:.3f}/h" if chosen.on_demand_usd_per_hour else ""
    refused = [str(a) for a in attempts if a.outcome != "launched"]
    tried = f"; before it: {'; '.join(refused)}" if refused else ""
    return (
        f"{chosen.instance_type} in {chosen.zone}: cheapest zone with capacity at {spot} ({chosen.source}){od}{tried}"
    )


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
