"""Versions in an S3 bucket: AWS, or the sandbox's moto, through the one boto3 adaptor.

The client comes from `remote.providers.aws_client.make_client` (retries, timeouts, the
credentials passed in, never read behind the caller's back); S3's errors become ours here,
in `S3ArtifactStore._call`. Each object carries its sha256 in its metadata; big files go
up in multipart.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from remote.errors import ArtifactNotFound, ChecksumMismatch, RemotePathRefused, StorageAccessDenied, StorageError
from remote.storage.paths import check_relative_path
from remote.storage.versions import MODELS_PREFIX, ArtifactTags, VersionedStore

if TYPE_CHECKING:  # pragma: no cover
    from remote.providers.aws_client import AwsTarget

MULTIPART_THRESHOLD = 16 << 20
T = TypeVar("T")


class S3ArtifactStore(VersionedStore):
    """Versions in an S3 bucket (AWS, or moto through the target's ``endpoint_url``).

    ``target`` says where (`AwsTarget`); ``client`` is an S3 client made elsewhere by the same
    adaptor (the console shares one per process). With neither, boto3's default chain for
    ``endpoint_url`` and ``region``.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any | None = None,
        target: "AwsTarget | None" = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
    ) -> None:
        from boto3.s3.transfer import TransferConfig

        from remote.providers.aws_client import AwsTarget, check_region, make_client

        if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket):
            raise RemotePathRefused(f"bucket name {bucket!r} is not a valid S3 bucket name")
        if prefix:
            check_relative_path(prefix.rstrip("/"))
            prefix = prefix.rstrip("/") + "/"
        if client is None:
            if target is None:
                target = AwsTarget(check_region(region) if region else "us-east-1", endpoint_url)
            client = make_client("s3", target)
            region = region or target.region
        self.bucket, self.prefix, self.region = bucket, prefix, region
        self.client: Any = client
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=max(multipart_threshold, 5 << 20)
        )

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn(*args, **kwargs)
        except NoCredentialsError as exc:
            raise StorageAccessDenied(
                f"no AWS credentials for {self.describe()}; set a profile or AWS_* variables"
            ) from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ArtifactNotFound(f"{what}: not found in {self.describe()}") from exc
            if code == "NoSuchBucket":
                raise ArtifactNotFound(f"bucket {self.bucket} does not exist; create it with ensure_bucket") from exc
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
                raise StorageAccessDenied(f"{what}: {self.describe()} refused our credentials ({code})") from exc
            raise StorageError(f"{what} failed on {self.describe()}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{what} failed on {self.describe()}: {exc}") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing, blocking all public access and encrypting at rest."""
        try:
            self._call("head bucket", self.client.head_bucket, Bucket=self.bucket)
            return
        except ArtifactNotFound:
            pass
        kwargs: dict = {"Bucket": self.bucket}
        region = self.region or self.client.meta.region_name
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        self._call("create bucket", self.client.create_bucket, **kwargs)
        self._call(
            "block public access",
            self.client.put_public_access_block,
            Bucket=self.bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        self._call(
            "default encryption",
            self.client.put_bucket_encryption,
            Bucket=self.bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _put_file(self, key: str, path: Path, sha256: str, tags: ArtifactTags | None) -> None:
        extra: dict = {"Metadata": {"sha256": sha256}}
        if tags is not None:
            extra["Tagging"] = tags.as_query()
        self._call(
            f"upload {key}",
            self.client.upload_file,
            str(path),
            self.bucket,
            self._key(key),
            ExtraArgs=extra,
            Config=self._transfer,
        )

    def _put_bytes(self, key: str, data: bytes, tags: ArtifactTags | None) -> None:
        extra: dict = {"Metadata": {"sha256": hashlib.sha256(data).hexdigest()}, "ContentType": "application/json"}
        if tags is not None:
            extra["Tagging"] = tags.as_query()
        self._call(f"upload {key}", self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data, **extra)

    def recorded_sha256(self, key: str) -> str | None:
        try:
            head = self._call(f"read {key}", self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        except ArtifactNotFound:
            return None
        return head.get("Metadata", {}).get("sha256")

    def _get_file(self, key: str, dest: Path) -> str | None:
        head = self._call(f"read {key}", self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        self._call(
            f"download {key}", self.client.download_file, self.bucket, self._key(key), str(dest), Config=self._transfer
        )
        return head.get("Metadata", {}).get("sha256")

    def _get_bytes(self, key: str) -> bytes | None:
        try:
            obj = self._call(f"read {key}", self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        except ArtifactNotFound:
            return None
        data = obj["Body"].read()
        recorded = obj.get("Metadata", {}).get("sha256")
        if recorded and recorded != hashlib.sha256(data).hexdigest():
            raise ChecksumMismatch(f"{key} in {self.describe()} does not match its recorded sha256; refusing it")
        return data

    def _list_versions(self) -> list[str]:
        versions: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(
            "list versions",
            lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=self._key(MODELS_PREFIX), Delimiter="/")),
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                versions.append(common["Prefix"][len(self._key(MODELS_PREFIX)) :].rstrip("/"))
        return versions

    def _delete_prefix(self, prefix: str) -> int:
        full = self._key(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(f"list {prefix}", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full)))
        keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            out = self._call(
                f"delete {prefix}",
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
            if out.get("Errors"):
                first = out["Errors"][0]
                raise StorageError(f"delete {first.get('Key')} failed on {self.describe()}: {first.get('Code')}")
        # A multipart upload killed part-way keeps its parts (billed, invisible to a listing).
        uploads = self._call(
            f"list uploads under {prefix}", self.client.list_multipart_uploads, Bucket=self.bucket, Prefix=full
        )
        for upload in uploads.get("Uploads", []):
            self._call(
                f"abort upload of {upload['Key']}",
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=upload["Key"],
                UploadId=upload["UploadId"],
            )
        return len(keys)

    def object_tags(self, key: str) -> dict[str, str]:
        """The S3 tags of one object (for checks and the models list)."""
        out = self._call(f"read tags of {key}", self.client.get_object_tagging, Bucket=self.bucket, Key=self._key(key))
        return {t["Key"]: t["Value"] for t in out.get("TagSet", [])}
