"""Store URLs: ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``az://container/prefix``, or a local path.

`parse_store_url` checks a URL's shape (bad ones are `StoreUrlInvalid`, exit 2, before
anything is contacted); `open_store` makes the store, given where each cloud is reached
(`StoreEndpoints`: the AWS target, a GCS endpoint for an emulator, the Azure connection
string). Credentials come from each cloud's own settings and never appear in a message.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote.errors import RemotePathRefused
from remote.storage.versions import VersionedStore

SCHEMES = ("s3", "gs", "az", "file")


class StoreUrlInvalid(RemotePathRefused):
    """A store URL that names no store we know; bad input."""


@dataclass(frozen=True)
class StoreUrl:
    scheme: str
    """``s3``, ``gs``, ``az`` or ``file`` (a local directory)."""
    bucket: str
    """Bucket or container; for ``file`` the directory."""
    prefix: str = ""

    def __str__(self) -> str:
        if self.scheme == "file":
            return self.bucket
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class StoreEndpoints:
    """Where each cloud is reached; None means the cloud's own defaults."""

    aws_target: Any = None
    """`remote.providers.aws_client.AwsTarget` (the sandbox's moto, or AWS)."""
    gcs_endpoint: str | None = None
    """A GCS emulator (else ``$STORAGE_EMULATOR_HOST``, else Google)."""
    azure_connection_string: str | None = None
    """Else ``$AZURE_STORAGE_CONNECTION_STRING``."""


def parse_store_url(url: str) -> StoreUrl:
    url = str(url).strip()
    match = re.match(r"^([a-z0-9]+)://([^/]*)/?(.*)$", url)
    if not match:
        if not url or "://" in url:
            raise StoreUrlInvalid(f"store {url!r} is not s3://, gs://, az:// or a local path")
        return StoreUrl("file", str(Path(url).expanduser()))
    scheme, bucket, prefix = match.groups()
    if scheme not in SCHEMES:
        raise StoreUrlInvalid(f"store {url!r} has scheme {scheme}://; use s3://, gs://, az:// or a local path")
    if scheme == "file":
        return StoreUrl("file", "/" + prefix if not bucket else bucket + "/" + prefix)
    if not bucket:
        raise StoreUrlInvalid(f"store {url!r} names no bucket or container")
    return StoreUrl(scheme, bucket, prefix.rstrip("/"))


def open_store(url: str | StoreUrl, endpoints: StoreEndpoints = StoreEndpoints()) -> VersionedStore:
    """The store ``url`` names (nothing is contacted until it is used)."""
    where = url if isinstance(url, StoreUrl) else parse_store_url(url)
    if where.scheme == "s3":
        from remote.storage.s3 import S3ArtifactStore

        return S3ArtifactStore(where.bucket, prefix=where.prefix, target=endpoints.aws_target)
    if where.scheme == "gs":
        from remote.storage.gcs import GcsArtifactStore

        return GcsArtifactStore(where.bucket, prefix=where.prefix, endpoint=endpoints.gcs_endpoint)
    if where.scheme == "az":
        from remote.storage.azure import CONNECTION_SETTING, AzureArtifactStore

        connection = endpoints.azure_connection_string or os.environ.get(CONNECTION_SETTING)
        return AzureArtifactStore(where.bucket, prefix=where.prefix, connection_string=connection)
    from remote.storage.local import LocalArtifactStore

    return LocalArtifactStore(where.bucket)
