"""Versions in a Google Cloud Storage bucket (``gs://bucket/prefix``), through google-cloud-storage.

Credentials are Google's own chain (``GOOGLE_APPLICATION_CREDENTIALS`` naming a service
account file, or the machine's identity); ``STORAGE_EMULATOR_HOST`` (the client's own
setting) or ``endpoint`` points it at an emulator, anonymously. Each object carries its
sha256 in its custom metadata (and the version's tags), as in S3. Google's errors become
ours in `GcsArtifactStore._call`.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Callable, TypeVar

from remote.errors import ArtifactNotFound, ChecksumMismatch, RemotePathRefused, StorageAccessDenied, StorageError
from remote.storage.paths import check_relative_path
from remote.storage.versions import MODELS_PREFIX, ArtifactTags, VersionedStore

T = TypeVar("T")
EMULATOR_SETTING = "STORAGE_EMULATOR_HOST"
CREDENTIALS_SETTING = "GOOGLE_APPLICATION_CREDENTIALS"


class GcsArtifactStore(VersionedStore):
    """Versions in a GCS bucket (or an emulator at ``endpoint`` / ``$STORAGE_EMULATOR_HOST``)."""

    def __init__(
        self, bucket: str, *, prefix: str = "", endpoint: str | None = None, project: str | None = None
    ) -> None:
        if not re.match(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", bucket):
            raise RemotePathRefused(f"bucket name {bucket!r} is not a valid GCS bucket name")
        if prefix:
            check_relative_path(prefix.rstrip("/"))
            prefix = prefix.rstrip("/") + "/"
        self.bucket_name, self.prefix = bucket, prefix
        self.endpoint = endpoint or os.environ.get(EMULATOR_SETTING) or None
        self.project = project or "retrain-console"
        self._client: Any = None

    def describe(self) -> str:
        return f"gs://{self.bucket_name}/{self.prefix}"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._call("connect", self._connect)
        return self._client

    def _connect(self) -> Any:
        from google.cloud import storage

        if self.endpoint:
            from google.auth.credentials import AnonymousCredentials

            endpoint = self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}"
            return storage.Client(
                project=self.project, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
            )
        return storage.Client(project=None)

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        try:
            return fn(*args, **kwargs)
        except auth_exc.GoogleAuthError as exc:
            raise StorageAccessDenied(
                f"{what}: no usable Google credentials for {self.describe()}; set {CREDENTIALS_SETTING} "
                f"to a service account file ({type(exc).__name__})"
            ) from None
        except gexc.NotFound as exc:
            raise ArtifactNotFound(f"{what}: not found in {self.describe()}") from exc
        except (gexc.Forbidden, gexc.Unauthorized) as exc:
            raise StorageAccessDenied(
                f"{what}: {self.describe()} refused our credentials ({exc.code}); check {CREDENTIALS_SETTING}"
            ) from None
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"{what} failed on {self.describe()}: {str(exc).splitlines()[0][:200]}") from None
        except OSError as exc:  # connection refused, DNS...
            raise StorageError(f"{what} failed on {self.describe()}: {exc}") from None

    def _bucket(self) -> Any:
        return self.client.bucket(self.bucket_name)

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing."""
        from google.api_core import exceptions as gexc

        try:
            self._call("create bucket", self.client.create_bucket, self.bucket_name)
        except StorageError as exc:
            if not isinstance(exc.__cause__, gexc.Conflict) and "already" not in str(exc).lower():
                if self._call("look up bucket", self.client.lookup_bucket, self.bucket_name) is None:
                    raise

    def _key(self, key: str) -> str:
        return self.prefix + key

    @staticmethod
    def _metadata(sha256: str, tags: ArtifactTags | None) -> dict[str, str]:
        meta = {"sha256": sha256}
        if tags is not None:
            meta.update({"run_id": tags.run_id, "trained_date": tags.trained_date, "gpu": tags.gpu})
        return meta

    def _put_file(self, key: str, path: Path, sha256: str, tags: ArtifactTags | None) -> None:
        blob = self._bucket().blob(self._key(key))
        blob.metadata = self._metadata(sha256, tags)
        self._call(f"upload {key}", blob.upload_from_filename, str(path))

    def _put_bytes(self, key: str, data: bytes, tags: ArtifactTags | None) -> None:
        blob = self._bucket().blob(self._key(key))
        blob.metadata = self._metadata(hashlib.sha256(data).hexdigest(), tags)
        self._call(f"upload {key}", blob.upload_from_string, data, content_type="application/json")

    def recorded_sha256(self, key: str) -> str | None:
        blob = self._call(f"read {key}", self._bucket().get_blob, self._key(key))
        return None if blob is None else (blob.metadata or {}).get("sha256")

    def _get_file(self, key: str, dest: Path) -> str | None:
        blob = self._call(f"read {key}", self._bucket().get_blob, self._key(key))
        if blob is None:
            raise ArtifactNotFound(f"{key} is missing from {self.describe()}")
        self._call(f"download {key}", blob.download_to_filename, str(dest))
        return (blob.metadata or {}).get("sha256")

    def _get_bytes(self, key: str) -> bytes | None:
        blob = self._call(f"read {key}", self._bucket().get_blob, self._key(key))
        if blob is None:
            return None
        data: bytes = self._call(f"download {key}", blob.download_as_bytes)
        recorded = (blob.metadata or {}).get("sha256")
        if recorded and recorded != hashlib.sha256(data).hexdigest():
            raise ChecksumMismatch(f"{key} in {self.describe()} does not match its recorded sha256; refusing it")
        return data

    def _delete_prefix(self, prefix: str) -> int:
        blobs = self._call(
            f"list {prefix}", lambda: list(self.client.list_blobs(self.bucket_name, prefix=self._key(prefix)))
        )
        for blob in blobs:
            self._call(f"delete {blob.name}", blob.delete)
        return len(blobs)

    def _list_versions(self) -> list[str]:
        base = self._key(MODELS_PREFIX)

        def prefixes() -> list[str]:
            pages = self.client.list_blobs(self.bucket_name, prefix=base, delimiter="/")
            for _ in pages:  # the prefixes fill in as the pages are read
                pass
            return sorted(pages.prefixes)

        return [p[len(base) :].rstrip("/") for p in self._call("list versions", prefixes)]
