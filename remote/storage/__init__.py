"""The artifact store: versioned model sets (and small records) in S3 or a local directory.

Modules: `versions` (the layout, the records, the `ArtifactStore` protocol and the version
logic every store shares), `paths` (plain relative paths, safe joins, tar-slip-proof
extraction, sha256), and one module per kind of store: `s3` (AWS or the sandbox's moto,
through the one boto3 adaptor) and `local` (a directory). A new kind of store (gs://,
az://) is a new module beside them implementing `VersionedStore`'s four primitives.
``from remote.storage import X`` keeps working for every public name.
"""

from __future__ import annotations

from remote.storage.local import LocalArtifactStore
from remote.storage.paths import check_relative_path, extract_tar_safely, safe_join, sha256_of
from remote.storage.s3 import MULTIPART_THRESHOLD, S3ArtifactStore
from remote.storage.versions import (
    LATEST_KEY,
    MANIFEST_FILE,
    MODELS_PREFIX,
    ArtifactStore,
    ArtifactTags,
    VersionedStore,
    VersionRecord,
    check_version,
    new_version_name,
)

__all__ = [
    "LATEST_KEY",
    "MANIFEST_FILE",
    "MODELS_PREFIX",
    "MULTIPART_THRESHOLD",
    "ArtifactStore",
    "ArtifactTags",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "VersionRecord",
    "VersionedStore",
    "check_relative_path",
    "check_version",
    "extract_tar_safely",
    "new_version_name",
    "safe_join",
    "sha256_of",
]
