"""The `launch` and `terminate` checklist steps, and the one place settings become a provider.

`launch` is idempotent per run: the provider first looks for a live instance tagged with
the run id (so a resumed run after ``kill -9`` reuses the GPU it already pays for); the
instance is recorded in the state store with its price, and its SSH coordinates are the
step's outputs for the sync and train steps. Every instance carries the dead-man switch in
its user-data (`remote.deadman`).

`terminate` ends every instance of the run and succeeds only when the provider confirms
the `terminated` state.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.checklist.step import Step, StepContext, StepResult, register
from console.cost import record_rate
from console.errors import ConfigError, UsageError
from console.steps.params import LaunchParams, TerminateParams
from remote.deadman import deadman_user_data
from remote.providers.base import LaunchSpec

if TYPE_CHECKING:  # pragma: no cover
    from console.settings import Settings
    from console.state import StateStore
    from remote.providers.base import Instance, Provider
    from remote.sandbox.endpoints import SandboxEndpoints


def key_dir(settings: "Settings") -> Path:
    """Where instance private keys live (0600 files): ``<state_dir>/keys``."""
    return Path(settings.state_dir).expanduser() / "keys"


def sandbox_endpoints(settings: "Settings", *, start: bool = True) -> "SandboxEndpoints":
    """The sandbox daemon's endpoints, starting it first when `start` (the sandbox profile's promise)."""
    from remote.sandbox.lifecycle import ensure_up, require_up

    state_dir = Path(settings.state_dir).expanduser()
    market = settings.sandbox
    if not start:
        return require_up(state_dir)
    endpoints = ensure_up(state_dir, market_seed=market.market_seed, market_mode=market.market_mode)
    if (endpoints.market_mode, endpoints.market_seed) != (market.market_mode, market.market_seed):
        raise ConfigError(
            f"the sandbox is running a {endpoints.market_mode} market (seed {endpoints.market_seed}) but the "
            f"settings ask for {market.market_mode} (seed {market.market_seed})",
            hint="`console sandbox down` first; the next command starts the one the settings ask for")
    return endpoints


def uses_sandbox(settings: "Settings") -> bool:
    """True when the cloud is the built-in sandbox (sandbox profile, no endpoint override)."""
    return settings.is_sandbox and not settings.aws_endpoint_url and settings.cloud_provider == "ec2"


def cloud_provider(settings: "Settings", *, start_sandbox: bool = True) -> "Provider":
    """The provider the settings describe: the sandbox's EC2, real EC2, or static hosts."""
    if settings.cloud_provider == "static":
        return _static_provider(settings)
    if settings.cloud_provider != "ec2":
        raise ConfigError(f"cloud provider {settings.cloud_provider!r} is not available yet",
                          hint="use cloud_provider = \"ec2\" or \"static\"")
    if uses_sandbox(settings):
        return sandbox_endpoints(settings, start=start_sandbox).ec2_provider(key_dir(settings))
    from remote.providers.aws_client import AwsCredentials, AwsTarget
    from remote.providers.ec2 import Ec2SpotProvider

    creds = None
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        creds = AwsCredentials(settings.aws_access_key_id.get_secret_value(),
                               settings.aws_secret_access_key.get_secret_value())
    target = AwsTarget(settings.aws_region, settings.aws_endpoint_url, creds)
    try:
        return Ec2SpotProvider(target, key_dir=key_dir(settings))
    except Exception as exc:
        if getattr(exc, "exit_code", None) == 2:  # unknown region: a config problem
            raise ConfigError(str(exc), hint="set aws_region / AWS_REGION") from exc
        raise


def _static_provider(settings: "Settings") -> "Provider":
    from remote.providers.static import StaticHost, StaticHostProvider

    hosts = []
    for i, raw in enumerate(settings.cloud.static_hosts):
        try:
            address = str(raw["address"])
            hosts.append(StaticHost(
                name=str(raw.get("name") or address.replace(":", "-")), address=address,
                port=int(raw.get("port", 22)), user=str(raw.get("user", settings.cloud.ssh_user)),
                key_path=Path(str(raw["key"])).expanduser() if raw.get("key") else None,
                label=str(raw.get("label", "static"))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"cloud.static_hosts[{i}] is not usable: {exc}",
                              hint="each host needs address, and may set port, user, key") from exc
    if not hosts:
        raise ConfigError("cloud_provider is static but cloud.static_hosts is empty",
                          hint="list your GPU hosts under [cloud] static_hosts")
    return StaticHostProvider(hosts, lease_dir=Path(settings.state_dir).expanduser() / "leases")


def operator_cidr(settings: "Settings") -> str:
    """The one address SSH is opened to: 127.0.0.1 in the sandbox, else this machine's public IP."""
    if uses_sandbox(settings) or settings.aws_endpoint_url:
        return "127.0.0.1/32"
    import ipaddress

    import httpx

    try:
        text = httpx.get("https://checkip.amazonaws.com", timeout=10).text.strip()
        return f"{ipaddress.ip_address(text)}/32"
    except (httpx.HTTPError, ValueError) as exc:
        from console.errors import StepFailed

        raise StepFailed("cannot find this machine's public address for the SSH rule",
                         hint="check the network (checkip.amazonaws.com)") from exc


def record_instance(store: "StateStore", inst: "Instance", run_id: str | None, provider_name: str,
                    extra: dict[str, Any] | None = None) -> None:
    """Upsert the instance row (never a secret in it)."""
    data = {"public_address": inst.public_address, "port": inst.port, "ssh_user": inst.ssh_user,
            "key_path": str(inst.key_path) if inst.key_path else None, "lifecycle": inst.lifecycle,
            "spot_max_usd_per_hour": inst.spot_max_usd_per_hour, **(extra or {})}
    launched = inst.launched_at.timestamp() if inst.launched_at else None
    store.upsert_instance(inst.id, run_id=run_id, provider=provider_name, state=inst.state,
                          instance_type=inst.instance_type, zone=inst.zone, launched_at=launched, data=data)


def launch_spec(settings: "Settings", run_id: str, *, instance_type: str, alt_type: str, budget_usd: float,
                max_runtime_hours: float, attempt: int = 1) -> LaunchSpec:
    """The launch spec for a run: tags, operator-only SSH, and the dead-man switch in user-data."""
    try:
        return LaunchSpec(
            run_id=run_id, owner=settings.cloud.owner, ssh_cidr=operator_cidr(settings),
            instance_type=instance_type, alternative_types=(alt_type,),
            max_price_usd_per_hour=settings.cloud.max_spot_price_usd,
            max_runtime_minutes=max(1, round(max_runtime_hours * 60)), budget_usd=budget_usd,
            user_data=deadman_user_data(max_runtime_s=max_runtime_hours * 3600,
                                        heartbeat_timeout_s=settings.watchdog.heartbeat_timeout_s,
                                        ssh_user=settings.cloud.ssh_user),
            ami_name_pattern=settings.cloud.ami_name_pattern, ssh_user=settings.cloud.ssh_user, attempt=attempt)
    except ValueError as exc:  # an instance type or run id the cloud would never accept
        raise UsageError(f"launch: {exc}") from None


@register
class Launch(Step):
    """Get a spot GPU for the run (or the one it already has)."""

    name = "launch"
    Params = LaunchParams

    def plan(self, ctx: StepContext) -> str:
        p = ctx.params
        where = "the sandbox" if uses_sandbox(ctx.settings) else f"{ctx.settings.cloud_provider} {ctx.settings.aws_region}"
        return (f"launch a {p.instance_type} spot instance (else {p.alt_instance_type}) on {where}, "
                f"budget ${p.budget_usd:.2f}, at most {p.max_runtime_hours:g}h; reuse the run's own if it exists")

    def run(self, ctx: StepContext) -> StepResult:
        p = ctx.params
        provider = cloud_provider(ctx.settings)
        spec = launch_spec(ctx.settings, ctx.run_id, instance_type=p.instance_type, alt_type=p.alt_instance_type,
                           budget_usd=p.budget_usd, max_runtime_hours=p.max_runtime_hours, attempt=ctx.attempt)
        ctx.log.info("looking for an instance of run %s before launching", ctx.run_id)
        outcome = provider.launch(spec)
        result = self._record(ctx, provider, outcome)
        if ctx.settings.watchdog.autostart:
            from console.watchdog import ensure_watchdog_running

            try:
                pid = ensure_watchdog_running(ctx.settings)
                ctx.log.info("watchdog running (pid %s)", pid)
            except Exception as exc:  # the instance's own dead-man switch still guards it
                ctx.log.warning("could not start the watchdog: %s", exc)
                ctx.emit("watchdog.not_started", f"could not start the watchdog: {exc}")
        return result

    @staticmethod
    def _record(ctx: StepContext, provider: Any, outcome: Any) -> StepResult:
        settings = ctx.settings
        inst = outcome.instance
        for attempt in outcome.attempts:
            ctx.log.info("tried %s", attempt)
        ctx.log.info("%s", outcome.reason)
        outputs = ssh_outputs(settings, inst)
        record_instance(ctx.state, inst, ctx.run_id, provider.name,
                        {"launch_reason": outcome.reason, "attempt": ctx.attempt})
        price = _launch_price(provider, inst)
        if price is not None:
            record_rate(ctx.state, inst.id, ctx.run_id, *price)
        ctx.emit("instance.launched" if not outcome.reused else "instance.reused", outcome.reason,
                 instance_id=inst.id, instance_type=inst.instance_type, zone=inst.zone,
                 spot_usd_per_hour=price[0] if price else None, source=price[2] if price else None)
        verb = "reused" if outcome.reused else "launched"
        rate = f" at ${price[0]:.4f}/h ({price[2]})" if price else ""
        return StepResult.ok(f"{verb} {inst.id} ({inst.instance_type} in {inst.zone}){rate}",
                             details={"reason": outcome.reason, "tried": [str(a) for a in outcome.attempts]},
                             **outputs)


def ssh_outputs(settings: "Settings", inst: "Instance") -> dict[str, Any]:
    """What later steps need to reach the instance over SSH (address resolved in the sandbox)."""
    out: dict[str, Any] = {"instance_id": inst.id, "instance_type": inst.instance_type, "zone": inst.zone,
                           "host": inst.public_address, "port": inst.port, "user": inst.ssh_user,
                           "key_path": str(inst.key_path) if inst.key_path else None,
                           "provider": inst.provider}
    if uses_sandbox(settings) and inst.provider == "ec2":
        endpoint = sandbox_endpoints(settings, start=False).ssh_endpoint(inst.id, wait_s=5.0)
        # The sandbox's "DNS": the public address moto gave resolves to the local endpoint,
        # and the endpoints file is the trusted publication of its host key.
        out.update(host=endpoint.host, port=endpoint.port, host_key=endpoint.host_key,
                   host_key_publication=f"-----BEGIN SSH HOST KEY KEYS-----\n{endpoint.host_key}\n"
                                        "-----END SSH HOST KEY KEYS-----\n",
                   public_address=inst.public_address)
    return out


def _launch_price(provider: "Provider", inst: "Instance") -> tuple[float, float | None, str] | None:
    if inst.spot_usd_per_hour is None:
        return None
    on_demand = None
    source = getattr(provider, "price_source", "launch tag")
    try:
        for price in provider.prices([inst.instance_type]):
            if price.zone == inst.zone:
                on_demand, source = price.on_demand_usd_per_hour, price.source
                break
    except Exception:  # the price table is for the ledger; the launch itself succeeded
        pass
    return inst.spot_usd_per_hour, on_demand, source


@register
class Terminate(Step):
    """End every instance of the run and confirm it."""

    name = "terminate"
    Params = TerminateParams

    def plan(self, ctx: StepContext) -> str:
        return "terminate the run's instances and wait until the provider confirms they are gone"

    def run(self, ctx: StepContext) -> StepResult:
        from remote.errors import InstanceNotFound

        provider = cloud_provider(ctx.settings)
        ids = {r.id for r in ctx.state.instances(run_id=ctx.run_id, active_only=True)}
        ids |= {i.id for i in provider.list_managed() if i.run_id == ctx.run_id}
        if not ids:
            return StepResult.ok("no instance of this run is running", terminated=[])
        done = []
        for iid in sorted(ids):
            ctx.check_cancelled()
            started = time.monotonic()
            try:
                inst = provider.terminate(iid, timeout_s=max(30.0, min(600.0, ctx.seconds_left - 5)))
            except InstanceNotFound:
                ctx.log.info("%s is already gone", iid)
                ctx.state.mark_instance_terminated(iid, "terminate step: already gone")
                done.append(iid)
                continue
            ctx.log.info("%s %s after %.1fs", iid, inst.state, time.monotonic() - started)
            ctx.state.mark_instance_terminated(iid, "terminate step")
            ctx.emit("instance.terminated", f"{iid} terminated (confirmed)", instance_id=iid)
            done.append(iid)
        return StepResult.ok(f"terminated {', '.join(done)} (confirmed)", terminated=done)
