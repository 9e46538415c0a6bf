"""The local-training guard: training starts only on a host the console leased for this run.

At sync the console writes a lease file on the host (`write_lease`). The training entry
point and the scheduler call `check_lease` before touching any data; it returns the lease
or raises `LocalTrainingRefused` (exit code 3, message "refusing to train locally: ...").
There is deliberately no switch to turn it off: an operator who wants to train must go
through a leased host.

The lease file (JSON, default ``./.rc-lease.json`` in the training working directory, or
``$RC_LEASE_FILE``)::

    {"version": 1, "run_id": "...", "host_kind": "aws" | "sandbox" | "static",
     "instance_id": "...", "host_key_fingerprint": "SHA256:...",
     "operator_machine_id": "...", "issued_at": "...Z", "expires_at": "...Z"}

What "matches the host's own identity" means, per host kind:

- ``aws``: the EC2 instance id from instance metadata (IMDSv2, short timeout) equals
  ``instance_id``; one of the host's SSH host keys has ``host_key_fingerprint``; CUDA works.
- ``sandbox``: ``$RC_SANDBOX_INSTANCE_ID`` (set by the sandbox SSH server for the
  commands it runs) equals ``instance_id``; if the sandbox also sets
  ``$RC_SANDBOX_HOST_KEY_FINGERPRINT`` it must equal the lease's. No CUDA needed.
- ``static``: this host's machine id equals ``instance_id`` and differs from the
  operator's; one of its SSH host keys has the fingerprint; CUDA works.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

from training.errors import LocalTrainingRefused
from training.registry import write_json_atomic

LEASE_VERSION = 1
LEASE_FILENAME = ".rc-lease.json"
HOST_KINDS = ("aws", "sandbox", "static")
IMDS_DEFAULT_ENDPOINT = "http://169.254.169.254"
IMDS_TIMEOUT_S = 1.0
"""Short: off EC2 the metadata address does not answer, and we must not hang there."""
MACHINE_ID_PATHS = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
HOST_KEY_GLOB = "ssh_host_*_key.pub"


@dataclass(frozen=True)
class Lease:
    """Permission, written by the console at sync, to train on one host for one run."""

    run_id: str
    host_kind: str
    """One of ``aws``, ``sandbox``, ``static``: decides how the host proves who it is."""
    instance_id: str
    """EC2 instance id, sandbox instance id, or a static host's machine id."""
    host_key_fingerprint: str
    """The pinned SSH host key, OpenSSH style ``SHA256:<base64>``."""
    operator_machine_id: str
    """The operator's machine id: a static host must not be the operator's machine."""
    expires_at: str
    """UTC, ISO 8601."""
    issued_at: str = ""
    version: int = LEASE_VERSION

    @classmethod
    def issue(
        cls,
        *,
        run_id: str,
        host_kind: str,
        instance_id: str,
        host_key_fingerprint: str,
        operator_machine_id: str,
        valid_for: timedelta = timedelta(hours=12),
        now: datetime | None = None,
    ) -> "Lease":
        """A new lease valid for ``valid_for`` from ``now``."""
        now = now or datetime.now(timezone.utc)
        return cls(
            run_id=run_id,
            host_kind=host_kind,
            instance_id=instance_id,
            host_key_fingerprint=host_key_fingerprint,
            operator_machine_id=operator_machine_id,
            issued_at=_iso(now),
            expires_at=_iso(now + valid_for),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)


def default_lease_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$RC_LEASE_FILE`` or ``./.rc-lease.json`` (the training working directory)."""
    environ = os.environ if environ is None else environ
    return Path(environ.get("RC_LEASE_FILE") or Path.cwd() / LEASE_FILENAME)


def write_lease(path: Path, lease: Lease) -> Path:
    """Write ``lease`` to ``path`` atomically (readers never see half a lease); returns the path."""
    if lease.host_kind not in HOST_KINDS:
        raise ValueError(f"host_kind must be one of {', '.join(HOST_KINDS)}, not {lease.host_kind!r}")
    path = Path(path)
    write_json_atomic(path, asdict(lease))
    return path


def read_lease(path: Path) -> Lease:
    """The lease at ``path``; refuses (exit 3) when it is missing or unreadable."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LocalTrainingRefused(
            f"no lease file at {path}; training runs only on a host the console leased (use `console train remote`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise LocalTrainingRefused(f"lease file {path} is unreadable ({type(exc).__name__})") from None
    fields = ("run_id", "host_kind", "instance_id", "host_key_fingerprint", "operator_machine_id", "expires_at")
    if not isinstance(data, dict) or any(not isinstance(data.get(f), str) or not data.get(f) for f in fields):
        raise LocalTrainingRefused(f"lease file {path} is malformed (needs {', '.join(fields)})")
    return Lease(
        **{f: data[f] for f in fields},
        issued_at=str(data.get("issued_at", "")),
        version=int(data.get("version", LEASE_VERSION)),
    )


@dataclass(frozen=True)
class HostIdentity:
    """How this host finds out who it is; each piece is injectable for tests."""

    environ: Mapping[str, str]
    imds_endpoint: str
    host_key_dir: Path
    machine_id_paths: Sequence[Path]
    cuda_available: Callable[[], bool]

    @classmethod
    def of_this_host(cls, environ: Mapping[str, str] | None = None) -> "HostIdentity":
        environ = dict(os.environ if environ is None else environ)
        # The same override botocore honours, so a test can stand up IMDS on 127.0.0.1.
        endpoint = environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_DEFAULT_ENDPOINT
        return cls(
            environ=environ,
            imds_endpoint=endpoint.rstrip("/"),
            host_key_dir=Path("/etc/ssh"),
            machine_id_paths=MACHINE_ID_PATHS,
            cuda_available=_torch_cuda_available,
        )


def check_lease(
    path: Path | None = None,
    *,
    identity: HostIdentity | None = None,
    now: datetime | None = None,
) -> Lease:
    """The lease, if it exists, has not expired, and names this very host; else refuse (exit 3)."""
    identity = identity or HostIdentity.of_this_host()
    path = Path(path) if path is not None else default_lease_path(identity.environ)
    lease = read_lease(path)
    now = now or datetime.now(timezone.utc)
    expires = _parse_time(lease.expires_at, path)
    if expires <= now:
        raise LocalTrainingRefused(
            f"the lease for run {lease.run_id} expired at {lease.expires_at}; sync again from the console"
        )
    if lease.host_kind == "sandbox":
        _check_sandbox(lease, identity)
    elif lease.host_kind == "aws":
        _check_aws(lease, identity)
    elif lease.host_kind == "static":
        _check_static(lease, identity)
    else:
        raise LocalTrainingRefused(f"lease names unknown host kind {lease.host_kind!r}")
    return lease


def _check_sandbox(lease: Lease, identity: HostIdentity) -> None:
    actual = identity.environ.get("RC_SANDBOX_INSTANCE_ID", "")
    if not actual:
        raise LocalTrainingRefused(
            "the lease is for sandbox instance "
            f"{lease.instance_id} but RC_SANDBOX_INSTANCE_ID is not set (not running on a sandbox host)"
        )
    if actual != lease.instance_id:
        raise LocalTrainingRefused(f"this is sandbox instance {actual}, the lease is for {lease.instance_id}")
    fingerprint = identity.environ.get("RC_SANDBOX_HOST_KEY_FINGERPRINT", "")
    if fingerprint and fingerprint != lease.host_key_fingerprint:
        raise LocalTrainingRefused("this sandbox host's SSH host key is not the one the lease pins")


def _check_aws(lease: Lease, identity: HostIdentity) -> None:
    actual = ec2_instance_id(identity.imds_endpoint)
    if actual is None:
        raise LocalTrainingRefused(
            "the lease is for EC2 instance "
            f"{lease.instance_id} but no EC2 instance metadata answered (this is not that instance)"
        )
    if actual != lease.instance_id:
        raise LocalTrainingRefused(f"this is EC2 instance {actual}, the lease is for {lease.instance_id}")
    _check_host_key(lease, identity)
    _check_cuda(identity)


def _check_static(lease: Lease, identity: HostIdentity) -> None:
    actual = machine_id(identity.machine_id_paths)
    if actual is None:
        raise LocalTrainingRefused("this host has no readable machine id (/etc/machine-id)")
    if actual == lease.operator_machine_id:
        raise LocalTrainingRefused("this is the operator's own machine (same machine id)")
    if actual != lease.instance_id:
        raise LocalTrainingRefused(f"this host's machine id {actual} is not the leased host's {lease.instance_id}")
    _check_host_key(lease, identity)
    _check_cuda(identity)


def _check_host_key(lease: Lease, identity: HostIdentity) -> None:
    fingerprints = host_key_fingerprints(identity.host_key_dir)
    if not fingerprints:
        raise LocalTrainingRefused(f"no SSH host keys readable in {identity.host_key_dir}")
    if lease.host_key_fingerprint not in fingerprints:
        raise LocalTrainingRefused("none of this host's SSH host keys is the one the lease pins")


def _check_cuda(identity: HostIdentity) -> None:
    if not identity.cuda_available():
        raise LocalTrainingRefused("CUDA is not available on this host (a leased GPU host must have it)")


def ec2_instance_id(endpoint: str = IMDS_DEFAULT_ENDPOINT, timeout: float = IMDS_TIMEOUT_S) -> str | None:
    """This host's EC2 instance id via IMDSv2 (token, then metadata), or None off EC2."""
    try:
        token_req = urllib.request.Request(
            f"{endpoint}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        )
        with _no_proxy_open(token_req, timeout) as resp:
            token = resp.read().decode().strip()
        id_req = urllib.request.Request(
            f"{endpoint}/latest/meta-data/instance-id",
            headers={"X-aws-ec2-metadata-token": token},
        )
        with _no_proxy_open(id_req, timeout) as resp:
            value = resp.read().decode().strip()
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return value or None


def _no_proxy_open(request: urllib.request.Request, timeout: float):
    # Instance metadata is link-local: a proxy from the environment must never see it.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(request, timeout=timeout)


def machine_id(paths: Sequence[Path] = MACHINE_ID_PATHS) -> str | None:
    """The systemd/dbus machine id of this host, or None where there is none."""
    for candidate in paths:
        try:
            value = Path(candidate).read_text().strip()
        except OSError:
            continue
        if value:
            return value
    return None


def host_key_fingerprints(host_key_dir: Path) -> set[str]:
    """OpenSSH-style ``SHA256:...`` fingerprints of the host's public SSH host keys."""
    found = set()
    for pub in sorted(Path(host_key_dir).glob(HOST_KEY_GLOB)):
        try:
            fingerprint = ssh_fingerprint(pub.read_text())
        except (OSError, ValueError):
            continue
        found.add(fingerprint)
    return found


def ssh_fingerprint(public_key_line: str) -> str:
    """``SHA256:<unpadded base64>`` of an OpenSSH public key line (as ``ssh-keygen -l``)."""
    parts = public_key_line.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    blob = base64.b64decode(parts[1], validate=True)
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str, path: Path) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LocalTrainingRefused(f"lease file {path} has an unreadable expiry {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment
