"""One way to build boto3 clients, and the one place botocore errors become ours.

The same code talks to AWS and to the sandbox's moto server: only `endpoint_url`,
the region and the credentials differ. Credentials are passed in (never read here from
the environment behind the caller's back); None means boto3's default chain, which is
what an operator with an AWS profile or an instance role wants.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from remote.errors import CredentialsMissing, InstanceNotFound, ProviderError, UnknownInstanceType, UnknownRegion

T = TypeVar("T")

_CREDENTIAL_CODES = frozenset(
    {
        "AuthFailure",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "RequestExpired",
        "OptInRequired",
    }
)
_NOT_FOUND_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})


@dataclass(frozen=True)
class AwsCredentials:
    """An access key pair (and session token). Never printed: the secret is kept out of repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AwsTarget:
    """Where the API calls go: a region, and an endpoint URL for the sandbox (None for AWS)."""

    region: str
    endpoint_url: str | None = None
    credentials: AwsCredentials | None = None
    max_attempts: int = 4
    """botocore's standard retry mode: throttling and 5xx are retried with backoff."""
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0

    @property
    def where(self) -> str:
        return self.endpoint_url or f"AWS {self.region}"


def check_region(region: str) -> str:
    """The region if AWS knows it (any partition), else `UnknownRegion`."""
    if region not in _known_regions():
        raise UnknownRegion(f"unknown AWS region {region!r} (for example us-east-1, eu-west-1)")
    return region


@functools.lru_cache(maxsize=1)
def _known_regions() -> frozenset[str]:
    session = _shared_session()
    known: set[str] = set()
    for partition in session.get_available_partitions():
        known.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(known)


_session_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _shared_session() -> Any:
    # One boto3 session for the process: it caches the service models, which makes every
    # further client cheap. Credentials are given per client, never stored on it.
    import boto3.session

    return boto3.session.Session()


def _fresh_session() -> Any:
    import boto3.session

    return boto3.session.Session()


def make_client(service: str, target: AwsTarget) -> Any:
    """A boto3 client for `service` at `target`; missing credentials surface on first call."""
    from botocore.config import Config

    creds = target.credentials
    config = Config(
        retries={"mode": "standard", "max_attempts": target.max_attempts},
        connect_timeout=target.connect_timeout_s,
        read_timeout=target.read_timeout_s,
    )
    from botocore.exceptions import PartialCredentialsError

    try:
        with _session_lock:  # boto3 sessions are not thread-safe while making clients
            # Explicit credentials: the shared session (its service models cached). boto3's own
            # chain: a fresh session, so the credentials are looked up now, never an earlier
            # lookup's that a session would have kept.
            session = _shared_session() if creds else _fresh_session()
            return session.client(
                service,
                region_name=target.region,
                endpoint_url=target.endpoint_url,
                config=config,
                aws_access_key_id=creds.access_key_id if creds else None,
                aws_secret_access_key=creds.secret_access_key if creds else None,
                aws_session_token=creds.session_token if creds else None,
            )
    except PartialCredentialsError as exc:  # e.g. AWS_ACCESS_KEY_ID set without its secret
        raise CredentialsMissing(
            f"incomplete AWS credentials: {exc.kwargs.get('provider', 'env')} lacks "
            f"{exc.kwargs.get('cred_var', 'a value')} (set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or use the sandbox profile)"
        ) from exc


def call(target: AwsTarget, operation: str, fn: Callable[..., T], **kwargs: Any) -> T:
    """Run one API call; every botocore error comes out as a `ProviderError` subclass."""
    from botocore import exceptions as bx

    try:
        return fn(**kwargs)
    except (bx.NoCredentialsError, bx.PartialCredentialsError) as exc:
        raise CredentialsMissing(
            f"no AWS credentials for {operation} (set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or use the sandbox profile)"
        ) from exc
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.ConnectionClosedError) as exc:
        hint = "run `console sandbox up`" if target.endpoint_url else "check the network"
        raise ProviderError(
            f"cannot reach EC2 at {target.where} during {operation} ({hint})", code="Unreachable"
        ) from exc
    except bx.ClientError as exc:
        raise translate(exc, operation) from exc
    except bx.BotoCoreError as exc:
        raise ProviderError(f"{operation} failed: {type(exc).__name__} (see the step log)") from exc


def translate(exc: Any, operation: str) -> ProviderError:
    """Our error for a botocore `ClientError` (code kept on `.code`, message on one line)."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = " ".join(str(error.get("Message", "")).split())[:200]
    if code in _CREDENTIAL_CODES:
        return CredentialsMissing(
            f"AWS refused {operation} ({code}): check the profile, keys or role and its permissions"
        )
    if code in _NOT_FOUND_CODES:
        return InstanceNotFound(f"no such instance ({code}: {message})")
    if code == "InvalidInstanceType":
        return UnknownInstanceType(f"unknown instance type ({message}); for example g5.xlarge or g4dn.xlarge")
    err = ProviderError(f"{operation} failed: {code}: {message}", code=code)
    return err
