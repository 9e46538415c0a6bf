"""How the rest of the console finds the running sandbox: `SandboxEndpoints`.

The daemon publishes ``<state_dir>/sandbox/endpoints.json`` (written atomically on every
change): the moto URL, the market simulator URL, and one SSH endpoint per live instance
with its host key. Reading it is a file read, so lookups are cheap and work from any
process. Nothing secret is in it.

Layout of ``<state_dir>/sandbox/``::

    daemon.pid  lock  daemon.log  endpoints.json  amis.json
    instances/<instance-id>/      the instance's root (its HOME)
    hostkeys/<instance-id>        its SSH host key (0600)
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remote.errors import SandboxError, SandboxHostUnknown, SandboxNotRunning

if TYPE_CHECKING:  # pragma: no cover
    from remote.providers.aws_client import AwsTarget
    from remote.providers.base import Instance
    from remote.providers.ec2 import Ec2SpotProvider


@dataclass(frozen=True)
class SandboxPaths:
    """Where the sandbox keeps its files under a state directory."""

    root: Path

    @classmethod
    def under(cls, state_dir: Path) -> "SandboxPaths":
        return cls(Path(state_dir) / "sandbox")

    @property
    def pid_file(self) -> Path:
        return self.root / "daemon.pid"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    @property
    def log_file(self) -> Path:
        return self.root / "daemon.log"

    @property
    def endpoints_file(self) -> Path:
        return self.root / "endpoints.json"


@dataclass(frozen=True)
class SshEndpoint:
    """Where the SSH server standing in for one instance listens, and the key to pin."""

    instance_id: str
    host: str
    """Always 127.0.0.1."""
    port: int
    host_key: str
    """The host's public key as an OpenSSH line without comment: ``ssh-ed25519 AAAA...``."""
    fingerprint: str
    """``SHA256:...``, as ``ssh-keygen -lf`` prints it."""
    root_dir: Path
    """The instance's root directory: its HOME and the working directory of commands."""
    user: str = "ubuntu"
    public_address: str | None = None
    """The public IP moto gave the instance (what `Instance.public_address` shows)."""


@dataclass(frozen=True)
class SandboxEndpoints:
    """The running sandbox: its URLs, its SSH endpoints, and its fault-injection hooks."""

    state_dir: Path
    moto_url: str
    market_url: str | None
    region: str
    pid: int
    price_source: str = "sandbox table"
    market_mode: str = "structured"
    market_seed: int = 7
    market_clock_shift_s: int = 0
    """Wall time minus market time (`remote.sandbox.market.clock_shift_for`)."""
    batch_running: int = 2
    """Batch children the sandbox runs at once (its compute environment's vCPUs)."""

    @classmethod
    def read(cls, state_dir: Path) -> "SandboxEndpoints":
        """The endpoints the daemon published; `SandboxNotRunning` if there are none."""
        doc = _read_doc(SandboxPaths.under(state_dir))
        return cls(
            Path(state_dir),
            doc["moto_url"],
            doc.get("market_url"),
            doc["region"],
            int(doc["pid"]),
            doc.get("price_source", "sandbox table"),
            str(doc.get("market_mode", "structured")),
            int(doc.get("market_seed", 7)),
            int(doc.get("market_clock_shift_s", 0)),
            int(doc.get("batch_running", 2)),
        )

    # --- SSH endpoints ----------------------------------------------------------------

    def ssh_endpoints(self) -> dict[str, SshEndpoint]:
        """Every live sandbox instance's SSH endpoint, by instance id (read fresh)."""
        hosts = _read_doc(SandboxPaths.under(self.state_dir)).get("hosts", {})
        return {
            iid: SshEndpoint(
                iid,
                h["host"],
                int(h["port"]),
                h["host_key"],
                h["fingerprint"],
                Path(h["root"]),
                h.get("user", "ubuntu"),
                h.get("public_address"),
            )
            for iid, h in hosts.items()
        }

    def ssh_endpoint(self, instance_id: str, *, wait_s: float = 0.0) -> SshEndpoint:
        """The SSH endpoint of a live instance; `SandboxHostUnknown` if it has none (after `wait_s`)."""
        deadline = time.monotonic() + wait_s
        while True:
            found = self.ssh_endpoints().get(instance_id)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise SandboxHostUnknown(
                    f"the sandbox has no SSH endpoint for {instance_id} (not running or terminated); "
                    "see `console instance list`"
                )
            time.sleep(0.05)

    def endpoint_for_address(self, public_address: str) -> SshEndpoint:
        """The endpoint behind a public address moto gave an instance (the sandbox's DNS)."""
        for endpoint in self.ssh_endpoints().values():
            if endpoint.public_address == public_address:
                return endpoint
        raise SandboxHostUnknown(f"no sandbox instance has the address {public_address}")

    def resolve(self, instance: "Instance") -> "Instance":
        """The instance with its address and port replaced by its sandbox SSH endpoint."""
        endpoint = self.ssh_endpoint(instance.id)
        return replace(instance, public_address=endpoint.host, port=endpoint.port)

    # --- clients --------------------------------------------------------------------

    def aws_target(self) -> "AwsTarget":
        """Where boto3 should go for the sandbox; credentials are made up per call (moto ignores them)."""
        from remote.providers.aws_client import AwsCredentials, AwsTarget

        creds = AwsCredentials("SANDBOX" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30))
        return AwsTarget(self.region, self.moto_url, creds, max_attempts=3, connect_timeout_s=2.0, read_timeout_s=30.0)

    def ec2_provider(self, key_dir: Path) -> "Ec2SpotProvider":
        """The EC2 spot provider pointed at the sandbox, prices labelled as sandbox figures."""
        from remote.providers.ec2 import Ec2SpotProvider
        from remote.sandbox.prices import SANDBOX_ON_DEMAND_USD_PER_HOUR

        return Ec2SpotProvider(
            self.aws_target(),
            key_dir=key_dir,
            price_source=self.price_source,
            on_demand_usd_per_hour=SANDBOX_ON_DEMAND_USD_PER_HOUR,
            poll_interval_s=0.1,
        )

    # --- fault injection --------------------------------------------------------------

    def interrupt_spot(self, instance_id: str, *, notice_s: float = 2.0) -> None:
        """Inject a spot interruption: notice on the host now, terminated `notice_s` later."""
        self._control("interrupt", {"instance_id": instance_id, "notice_s": notice_s})

    def set_capacity(self, instance_type: str, zone: str = "*", *, available: bool) -> None:
        """Make RunInstances refuse (or accept again) a type in a zone ("*" = every zone)."""
        self._control("capacity", {"instance_type": instance_type, "zone": zone, "available": available})

    def healthy(self, timeout_s: float = 1.0) -> bool:
        """True when the daemon that published these endpoints answers."""
        try:
            with urllib.request.urlopen(f"{self.moto_url}/_sandbox/health", timeout=timeout_s) as resp:
                return json.loads(resp.read()).get("pid") == self.pid
        except (OSError, ValueError):
            return False

    def _control(self, name: str, payload: dict[str, Any]) -> None:
        request = urllib.request.Request(
            f"{self.moto_url}/_sandbox/{name}",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                return
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
            raise SandboxHostUnknown(f"sandbox refused {name}: {detail}") from exc
        except OSError as exc:
            raise SandboxNotRunning("the sandbox does not answer; run `console sandbox up`") from exc


def _read_doc(paths: SandboxPaths) -> dict[str, Any]:
    try:
        return json.loads(paths.endpoints_file.read_text())
    except FileNotFoundError as exc:
        raise SandboxNotRunning("the sandbox is not running; run `console sandbox up`") from exc
    except (OSError, ValueError) as exc:
        raise SandboxError(f"cannot read {paths.endpoints_file}; run `console sandbox down` then up") from exc
