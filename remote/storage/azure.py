"""Versions in an Azure Blob Storage container (``az://container/prefix``), through azure-storage-blob.

The account comes from a connection string (``AZURE_STORAGE_CONNECTION_STRING``, the SDK's
own setting; Azurite's names its ``BlobEndpoint``) passed in by the caller. Each blob carries
its sha256 (and the version's tags) in its metadata, as in S3. Azure's errors become ours in
`AzureArtifactStore._call`; the connection string never appears in a message.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Callable, TypeVar

from remote.errors import ArtifactNotFound, ChecksumMismatch, RemotePathRefused, StorageAccessDenied, StorageError
from remote.storage.paths import check_relative_path
from remote.storage.versions import MODELS_PREFIX, ArtifactTags, VersionedStore

T = TypeVar("T")
CONNECTION_SETTING = "AZURE_STORAGE_CONNECTION_STRING"


class AzureArtifactStore(VersionedStore):
    """Versions in an Azure Blob container reached through ``connection_string``."""

    def __init__(self, container: str, *, prefix: str = "", connection_string: str | None = None) -> None:
        if not re.match(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$", container):
            raise RemotePathRefused(f"container name {container!r} is not a valid Azure container name")
        if prefix:
            check_relative_path(prefix.rstrip("/"))
            prefix = prefix.rstrip("/") + "/"
        if not connection_string:
            raise StorageAccessDenied(f"no Azure account for az://{container}/{prefix}; set {CONNECTION_SETTING}")
        self.container, self.prefix = container, prefix
        self._connection_string = connection_string
        self._client: Any = None

    def describe(self) -> str:
        return f"az://{self.container}/{self.prefix}"

    @property
    def client(self) -> Any:
        """The container's client (made on first use)."""
        if self._client is None:
            from azure.storage.blob import BlobServiceClient

            try:
                service = BlobServiceClient.from_connection_string(self._connection_string)
            except (ValueError, TypeError):
                raise StorageAccessDenied(
                    f"the Azure connection string for {self.describe()} is malformed; check {CONNECTION_SETTING}"
                ) from None
            self._client = service.get_container_client(self.container)
        return self._client

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from azure.core import exceptions as aexc

        try:
            return fn(*args, **kwargs)
        except aexc.ClientAuthenticationError:
            raise StorageAccessDenied(
                f"{what}: {self.describe()} refused our credentials; check {CONNECTION_SETTING}"
            ) from None
        except aexc.ResourceNotFoundError as exc:
            raise ArtifactNotFound(f"{what}: not found in {self.describe()}") from exc
        except aexc.HttpResponseError as exc:
            if exc.status_code == 403:
                raise StorageAccessDenied(
                    f"{what}: {self.describe()} refused our credentials (403); check {CONNECTION_SETTING}"
                ) from None
            raise StorageError(f"{what} failed on {self.describe()}: HTTP {exc.status_code}") from None
        except aexc.AzureError as exc:
            raise StorageError(f"{what} failed on {self.describe()}: {type(exc).__name__}") from None

    def ensure_bucket(self) -> None:
        """Create the container if it is missing."""
        from azure.core.exceptions import ResourceExistsError

        try:
            self.client.create_container()
        except ResourceExistsError:
            return
        except Exception:  # noqa: BLE001 - translated by _call's rules
            self._call("create container", self.client.get_container_properties)

    def _key(self, key: str) -> str:
        return self.prefix + key

    @staticmethod
    def _metadata(sha256: str, tags: ArtifactTags | None) -> dict[str, str]:
        meta = {"sha256": sha256}
        if tags is not None:
            meta.update({"run_id": tags.run_id, "trained_date": tags.trained_date, "gpu": tags.gpu})
        return meta

    def _put_file(self, key: str, path: Path, sha256: str, tags: ArtifactTags | None) -> None:
        with open(path, "rb") as fh:
            self._call(
                f"upload {key}",
                self.client.upload_blob,
                self._key(key),
                fh,
                overwrite=True,
                metadata=self._metadata(sha256, tags),
            )

    def _put_bytes(self, key: str, data: bytes, tags: ArtifactTags | None) -> None:
        self._call(
            f"upload {key}",
            self.client.upload_blob,
            self._key(key),
            data,
            overwrite=True,
            metadata=self._metadata(hashlib.sha256(data).hexdigest(), tags),
        )

    def recorded_sha256(self, key: str) -> str | None:
        try:
            props = self._call(f"read {key}", self.client.get_blob_client(self._key(key)).get_blob_properties)
        except ArtifactNotFound:
            return None
        return (props.metadata or {}).get("sha256")

    def _get_file(self, key: str, dest: Path) -> str | None:
        stream = self._call(f"download {key}", self.client.download_blob, self._key(key))
        with open(dest, "wb") as fh:
            self._call(f"download {key}", stream.readinto, fh)
        return (stream.properties.metadata or {}).get("sha256")

    def _get_bytes(self, key: str) -> bytes | None:
        try:
            stream = self._call(f"read {key}", self.client.download_blob, self._key(key))
        except ArtifactNotFound:
            return None
        data: bytes = self._call(f"read {key}", stream.readall)
        recorded = (stream.properties.metadata or {}).get("sha256")
        if recorded and recorded != hashlib.sha256(data).hexdigest():
            raise ChecksumMismatch(f"{key} in {self.describe()} does not match its recorded sha256; refusing it")
        return data

    def _delete_prefix(self, prefix: str) -> int:
        names = self._call(
            f"list {prefix}", lambda: [item.name for item in self.client.list_blobs(name_starts_with=self._key(prefix))]
        )
        for name in names:
            self._call(f"delete {name}", self.client.delete_blob, name)
        return len(names)

    def _list_versions(self) -> list[str]:
        base = self._key(MODELS_PREFIX)

        def names() -> list[str]:
            return [item.name for item in self.client.walk_blobs(name_starts_with=base, delimiter="/")]

        return [n[len(base) :].rstrip("/") for n in self._call("list versions", names) if n.endswith("/")]
