"""Settings become objects here, once per process: paths, the cloud provider, runners for an
instance, the artifact store, market data URLs, the sandbox's endpoints, training backends.

Commands get it from the `console.app.App` (``app.resources``), steps from their context
(``ctx.resources``), the watchdog and the TUI from whoever started them. Nothing else turns
settings into clients, so one place knows what the sandbox profile changes (the moto
endpoint, the market simulator, the sandbox's published host keys) and nobody branches
on profile or provider names: they ask `Resources.sandboxed` or the provider's
`remote.providers.base.ProviderCapability` set.

Everything is built on first use and kept: building `Resources` touches nothing, so
``console --help`` and ``console plan`` stay fast, and a sandbox is started only by the
first thing that needs it (never by the watchdog: ``start_sandbox=False``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, TypeVar

from console.errors import ConfigError, StepFailed, UsageError
from console.outputs import HostCoordinates

if TYPE_CHECKING:  # pragma: no cover
    from console.settings import Settings
    from remote.backends.base import TrainingBackend
    from remote.providers.base import LaunchSpec, Provider
    from remote.sandbox.endpoints import SandboxEndpoints
    from remote.ssh import SSHRunner
    from remote.storage import S3ArtifactStore
    from training.features.spec import FeatureConfig

H = TypeVar("H", bound=HostCoordinates)

SANDBOX_BUCKET = "rc-sandbox-artifacts"
"""The artifact bucket on the sandbox's moto when the settings name none."""
SANDBOX_PLACEHOLDER_KEY = "sandbox-simulator"  # not a secret: the simulator checks no key


@dataclass(frozen=True)
class Paths:
    """Where the console keeps things on this machine."""

    state: Path
    """The state directory (``--state-dir``): the database, runs, keys, the sandbox."""
    data: Path
    """Candles and fundamentals (``data_dir``, else ``<state>/data``)."""
    features: Path
    """Feature files: ``<data>/features``."""
    models: Path
    """The artifact root the download step fills and the checks read: ``<data>/models``."""
    keys: Path
    """Private keys of launched instances (0600): ``<state>/keys``."""
    known_hosts: Path
    """Per-instance pinned host keys: ``<state>/known_hosts``."""
    runs: Path
    """One folder per run (step logs, staging): ``<state>/runs``."""
    downloads: Path
    """Verified downloads from the artifact store: ``<state>/downloads``."""
    sync_cache: Path
    """Local hashes between delta syncs: ``<state>/sync-cache``."""
    leases: Path
    """Static hosts leased to runs: ``<state>/leases``."""
    gate_key: Path
    """The key that signs gate records: ``<state>/gate.key``."""
    watchdog: Path
    """The watchdog's lock, pid, status and log: ``<state>/watchdog``."""

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Paths":
        from runtime_checks.gate import KEY_NAME

        state = Path(settings.state_dir).expanduser()
        data = Path(settings.data_root).expanduser()
        return cls(
            state=state,
            data=data,
            features=data / "features",
            models=data / "models",
            keys=state / "keys",
            known_hosts=state / "known_hosts",
            runs=state / "runs",
            downloads=state / "downloads",
            sync_cache=state / "sync-cache",
            leases=state / "leases",
            gate_key=state / KEY_NAME,
            watchdog=state / "watchdog",
        )

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id


@dataclass(frozen=True)
class MarketUrls:
    """Where market data comes from: Coinbase Exchange candles and CoinGecko fundamentals."""

    coinbase: str
    coingecko: str


class Resources:
    """The objects the settings describe, built on first use and kept for the process."""

    def __init__(self, settings: "Settings") -> None:
        self.settings = settings
        self.paths = Paths.from_settings(settings)
        self._lock = threading.RLock()
        self._provider: tuple[str, "Provider"] | None = None
        self._stores: dict[str, "S3ArtifactStore"] = {}

    # --- the sandbox ---------------------------------------------------------------------

    @property
    def sandboxed(self) -> bool:
        """True when the cloud is the built-in sandbox (sandbox profile, EC2, no endpoint override)."""
        s = self.settings
        return s.is_sandbox and not s.aws_endpoint_url and s.cloud_provider == "ec2"

    @property
    def simulated_market(self) -> bool:
        """True when market data comes from the sandbox's simulator (sandbox profile, URLs unset)."""
        s = self.settings
        return s.is_sandbox and (not s.coinbase_url or not s.coingecko_url)

    def sandbox(self, *, start: bool = True) -> "SandboxEndpoints":
        """The sandbox daemon's endpoints, starting it first when ``start`` (the sandbox profile's
        promise); with ``start=False`` a stopped sandbox is `SandboxNotRunning`."""
        from remote.sandbox.lifecycle import ensure_up, require_up

        if not start:
            return require_up(self.paths.state)
        market = self.settings.sandbox
        endpoints = ensure_up(
            self.paths.state,
            market_seed=market.market_seed,
            market_mode=market.market_mode,
            batch_running=market.batch_running,
        )
        running = (endpoints.market_mode, endpoints.market_seed, endpoints.batch_running)
        if running != (market.market_mode, market.market_seed, market.batch_running):
            raise ConfigError(
                f"the sandbox is running a {endpoints.market_mode} market (seed {endpoints.market_seed}, "
                f"{endpoints.batch_running} Batch children at once) but the settings ask for {market.market_mode} "
                f"(seed {market.market_seed}, {market.batch_running} at once)",
                hint="`console sandbox down` first; the next command starts the one the settings ask for",
            )
        return endpoints

    # --- the cloud -----------------------------------------------------------------------

    def provider(self, *, start_sandbox: bool = True) -> "Provider":
        """The provider the settings describe: the sandbox's EC2, real EC2, or static hosts.

        Built once and kept (a boto3 client costs a tenth of a second of CPU); on the sandbox
        it is rebuilt when the daemon restarts on another address.
        """
        with self._lock:
            key = self.sandbox(start=start_sandbox).moto_url if self.sandboxed else "configured"
            if self._provider is None or self._provider[0] != key:
                self._provider = (key, self._build_provider(start_sandbox))
            return self._provider[1]

    def _build_provider(self, start_sandbox: bool) -> "Provider":
        s = self.settings
        if s.cloud_provider == "static":
            return self._static_provider()
        if s.cloud_provider != "ec2":
            raise ConfigError(
                f"cloud provider {s.cloud_provider!r} is not available as an instance provider",
                hint='use cloud_provider = "ec2" or "static"',
            )
        if self.sandboxed:
            return self.sandbox(start=start_sandbox).ec2_provider(self.paths.keys)
        from remote.errors import UnknownRegion
        from remote.providers.ec2 import Ec2SpotProvider

        try:
            return Ec2SpotProvider(self.aws_target(), key_dir=self.paths.keys)
        except UnknownRegion as exc:
            raise ConfigError(str(exc), hint="set aws_region / AWS_REGION") from exc

    def aws_target(self) -> Any:
        """Where boto3 goes (`remote.providers.aws_client.AwsTarget`): the sandbox's moto or AWS."""
        from remote.providers.aws_client import AwsCredentials, AwsTarget

        if self.sandboxed:
            return self.sandbox().aws_target()
        s = self.settings
        creds = None
        if s.aws_access_key_id and s.aws_secret_access_key:
            creds = AwsCredentials(s.aws_access_key_id.get_secret_value(), s.aws_secret_access_key.get_secret_value())
        return AwsTarget(s.aws_region, s.aws_endpoint_url, creds)

    def job_views(self) -> list[Any]:
        """Live AWS Batch jobs of ours in the batch backend's queue (`remote.providers.batch_jobs`);
        the sandbox is never started for it (a stopped sandbox runs no job)."""
        from remote.providers.batch_jobs import list_batch_jobs

        target = self.sandbox(start=False).aws_target() if self.sandboxed else self.aws_target()
        queue = str(self.settings.backends.get("batch", {}).get("queue") or "rc-engine")
        return list_batch_jobs(target, [queue])

    def job_view(self, job_id: str) -> Any:
        """One Batch job of ours by id, live or ended (None once Batch has forgotten it)."""
        from remote.providers.batch_jobs import describe_batch_job

        return describe_batch_job(
            self.sandbox(start=False).aws_target() if self.sandboxed else self.aws_target(), job_id
        )

    def terminate_job(self, job_id: str, reason: str) -> None:
        from remote.providers.batch_jobs import terminate_batch_job

        target = self.sandbox(start=False).aws_target() if self.sandboxed else self.aws_target()
        terminate_batch_job(target, job_id, reason)

    def _static_provider(self) -> "Provider":
        from remote.providers.static import StaticHost, StaticHostProvider

        hosts = []
        for i, raw in enumerate(self.settings.cloud.static_hosts):
            try:
                address = str(raw["address"])
                hosts.append(
                    StaticHost(
                        name=str(raw.get("name") or address.replace(":", "-")),
                        address=address,
                        port=int(raw.get("port", 22)),
                        user=str(raw.get("user", self.settings.cloud.ssh_user)),
                        key_path=Path(str(raw["key"])).expanduser() if raw.get("key") else None,
                        label=str(raw.get("label", "static")),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"cloud.static_hosts[{i}] is not usable: {exc}",
                    hint="each host needs address, and may set port, user, key",
                ) from exc
        if not hosts:
            raise ConfigError(
                "cloud_provider is static but cloud.static_hosts is empty",
                hint="list your GPU hosts under [cloud] static_hosts",
            )
        return StaticHostProvider(hosts, lease_dir=self.paths.leases)

    def operator_cidr(self) -> str:
        """The one address SSH is opened to: 127.0.0.1 off the internet, else this machine's public IP."""
        if self.sandboxed or self.settings.aws_endpoint_url:
            return "127.0.0.1/32"
        import ipaddress

        import httpx

        try:
            text = httpx.get("https://checkip.amazonaws.com", timeout=10).text.strip()
            return f"{ipaddress.ip_address(text)}/32"
        except (httpx.HTTPError, ValueError) as exc:
            raise StepFailed(
                "cannot find this machine's public address for the SSH rule",
                hint="check the network (checkip.amazonaws.com)",
            ) from exc

    def launch_spec(
        self,
        run_id: str,
        *,
        instance_type: str,
        alt_type: str,
        budget_usd: float,
        max_runtime_hours: float,
        attempt: int = 1,
    ) -> "LaunchSpec":
        """The launch spec for a run: tags, operator-only SSH, and the dead-man switch in user-data."""
        from remote.deadman import deadman_user_data
        from remote.providers.base import LaunchSpec

        s = self.settings
        try:
            return LaunchSpec(
                run_id=run_id,
                owner=s.cloud.owner,
                ssh_cidr=self.operator_cidr(),
                instance_type=instance_type,
                alternative_types=(alt_type,),
                max_price_usd_per_hour=s.cloud.max_spot_price_usd,
                max_runtime_minutes=max(1, round(max_runtime_hours * 60)),
                budget_usd=budget_usd,
                user_data=deadman_user_data(
                    max_runtime_s=max_runtime_hours * 3600,
                    heartbeat_timeout_s=s.watchdog.heartbeat_timeout_s,
                    ssh_user=s.cloud.ssh_user,
                ),
                ami_name_pattern=s.cloud.ami_name_pattern,
                ssh_user=s.cloud.ssh_user,
                attempt=attempt,
            )
        except ValueError as exc:  # an instance type or run id the cloud would never accept
            raise UsageError(f"launch: {exc}") from None

    # --- hosts -----------------------------------------------------------------------------

    def runner(self, host: HostCoordinates, *, sleep: Callable[[float], None] | None = None) -> "SSHRunner":
        """An SSH runner for a host (the launch step's outputs, or an instance row's), its key
        pinned from the trusted publication it carries, or else -- for a provider that
        publishes host keys -- from the provider's own publication."""
        from dataclasses import replace

        from remote.hostkeys import HostKeyStore
        from remote.providers.base import HostKeyPublisher, ProviderCapability
        from remote.ssh import SSHRunner, SSHTarget

        target = SSHTarget(
            instance_id=host.instance_id,
            host=host.host,
            port=host.port,
            user=host.user,
            key_path=Path(host.key_path),
            known_hosts_dir=self.paths.known_hosts,
            publication=host.host_key_publication,
        )
        if (
            host.host_key_publication is None
            and self.owns(host.provider)
            and not HostKeyStore(self.paths.known_hosts).pinned(host.instance_id)
        ):
            provider = self.provider()
            if ProviderCapability.PUBLISHES_HOST_KEYS in provider.capabilities and isinstance(
                provider, HostKeyPublisher
            ):
                target = replace(target, publication=provider.host_key_publication(host.instance_id))
        return SSHRunner(target) if sleep is None else SSHRunner(target, sleep=sleep)

    def owns(self, provider_name: str) -> bool:
        """True when an instance recorded under ``provider_name`` is the configured provider's
        (settings can change between runs: an older run's instances may be another's)."""
        return provider_name == self.settings.cloud_provider

    def sandbox_host(self, instance_id: str, coordinates: H) -> H:
        """``coordinates`` resolved through the sandbox's "DNS": the public address moto gave
        an instance is its local SSH endpoint, and the endpoints file is the trusted
        publication of its host key."""
        endpoint = self.sandbox(start=False).ssh_endpoint(instance_id, wait_s=5.0)
        return coordinates.model_copy(
            update={
                "host": endpoint.host,
                "port": endpoint.port,
                "host_key": endpoint.host_key,
                "host_key_publication": f"{endpoint.host_key}\n",
                "public_address": coordinates.public_address or coordinates.host,
            }
        )

    # --- the artifact store ------------------------------------------------------------------

    @property
    def has_artifact_store(self) -> bool:
        """True when the profile has an artifact store (the sandbox's S3, or AWS with a bucket)."""
        return self.sandboxed or bool(self.settings.s3_bucket)

    def artifact_store(self, *, start_sandbox: bool = True) -> "S3ArtifactStore":
        """The S3 store the settings describe: the sandbox's moto, or AWS (s3_bucket required)."""
        from remote.storage import S3ArtifactStore

        with self._lock:
            if self.sandboxed:
                endpoints = self.sandbox(start=start_sandbox)
                key = endpoints.moto_url
                if key not in self._stores:
                    client = _s3_client(endpoints.aws_target())
                    self._stores = {
                        key: S3ArtifactStore(
                            self.settings.s3_bucket or SANDBOX_BUCKET, client=client, region=endpoints.region
                        )
                    }
                return self._stores[key]
            if not self.settings.s3_bucket:
                raise ConfigError("no S3 bucket for the artifacts", hint="set s3_bucket or SAGEMAKER_S3_BUCKET")
            if "aws" not in self._stores:
                target = self.aws_target()
                self._stores["aws"] = S3ArtifactStore(
                    self.settings.s3_bucket, client=_s3_client(target), region=target.region
                )
            return self._stores["aws"]

    def store_at(self, url: str) -> Any:
        """The store a URL names (`remote.storage.urls`: s3://, gs://, az://, a local path); an
        s3:// URL reaches the sandbox's moto on the sandbox profile, AWS otherwise."""
        from remote.storage.urls import StoreEndpoints, open_store, parse_store_url

        where = parse_store_url(url)
        target = self.aws_target() if where.scheme == "s3" else None
        return open_store(where, StoreEndpoints(aws_target=target))

    # --- market data -----------------------------------------------------------------------------

    def market_urls(self) -> MarketUrls:
        """Where candles and fundamentals come from: the settings' URLs, else on the sandbox
        profile the sandbox's market simulator (started on demand), else the real APIs."""
        from training.data import coinbase, coingecko

        cb, cg = self.settings.coinbase_url, self.settings.coingecko_url
        if self.simulated_market:
            market = self.sandbox().market_url
            if not market:
                raise ConfigError(
                    "the sandbox has no market simulator",
                    hint="restart it with `console sandbox down` then `console sandbox up`",
                )
            cb = cb or market
            cg = cg or f"{market}/api/v3"
        return MarketUrls(cb or coinbase.DEFAULT_URL, cg or coingecko.DEFAULT_URL)

    def coingecko_key(self) -> str | None:
        """The CoinGecko key; on the sandbox's simulator (which checks none) a fixed placeholder."""
        key = self.settings.coingecko_api_key
        if key is not None and key.get_secret_value():
            return key.get_secret_value()
        return SANDBOX_PLACEHOLDER_KEY if self.settings.is_sandbox and not self.settings.coingecko_url else None

    def feature_config(self) -> "FeatureConfig":
        """The feature configuration from ``[features]`` in the settings."""
        from training.features.spec import FeatureConfig

        return FeatureConfig.from_mapping(self.feature_settings())

    def feature_settings(self) -> dict[str, Any]:
        """``[features]`` as `FeatureConfig.from_mapping` takes it (JSON-able: a job's manifest carries it)."""
        f = self.settings.features
        return {
            "multi_timeframe_symbols": list(f.multi_timeframe_symbols),
            "counts": dict(f.expected_counts),
            "symbols": list(f.expected_counts),
        }

    # --- training backends ---------------------------------------------------------------------

    def backend(self, name: str, **context: Any) -> "TrainingBackend":
        """A new instance of the training backend registered as ``name``, built from the settings.

        ``context`` carries what only the caller knows (the run, its host pool, a log); see
        `remote.backends.base.BackendContext`. Unknown names are bad input.
        """
        from remote.backends import backend_class
        from remote.backends.base import BackendContext

        try:
            cls = backend_class(name)
        except KeyError as exc:
            raise UsageError(str(exc.args[0]), hint="see the [backends] the console ships") from None
        from console.cloud_training import backend_options

        options: Mapping[str, Any] = backend_options(self, name)
        store = self.artifact_store() if self.has_artifact_store else None
        return cls(
            BackendContext(store=store, aws=self.aws_target, work_dir=self.paths.runs, options=options, **context)
        )


def _s3_client(target: Any) -> Any:
    """An S3 client through the one boto3 adaptor (`remote.providers.aws_client.make_client`)."""
    from remote.providers.aws_client import make_client

    return make_client("s3", target)
