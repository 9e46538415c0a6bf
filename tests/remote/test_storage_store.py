"""The artifact store on a real moto S3 server (over HTTP) and on a local directory."""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
from pathlib import Path

import boto3
import pytest

from remote.errors import ArtifactNotFound, ArtifactPathEscape, ChecksumMismatch, RemotePathRefused
from remote.storage import (
    LATEST_KEY,
    ArtifactTags,
    LocalArtifactStore,
    S3ArtifactStore,
    extract_tar_safely,
    safe_join,
)

TAGS = ArtifactTags(run_id="run-42", trained_date="2026-11-23", gpu="NVIDIA A10G")


def _models(root: Path) -> Path:
    files = {
        "models/BTC-USD/20261123T100000Z/model.pt": os.urandom(2048),
        "models/BTC-USD/20261123T100000Z/metrics.json": b'{"auc": 0.61}',
        "champions/BTC-USD.json": b'{"version": "20261123T100000Z"}',
        "roster.json": b'["BTC-USD"]',
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture
def s3_client(moto_endpoint, aws_credentials):
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture(params=["s3", "local"])
def store(request, tmp_path, moto_endpoint, aws_credentials):
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "store")
    bucket = "rc-test-" + secrets.token_hex(6)
    s = S3ArtifactStore(bucket, endpoint_url=moto_endpoint, region="us-east-1")
    s.ensure_bucket()
    return s


def _tamper(store, key: str, data: bytes) -> None:
    """Replace an object's bytes behind the store's back, keeping its recorded sha256."""
    if isinstance(store, LocalArtifactStore):
        (store.root / key).write_bytes(data)
    else:
        head = store.client.head_object(Bucket=store.bucket, Key=key)
        store.client.put_object(Bucket=store.bucket, Key=key, Body=data, Metadata=head["Metadata"])


def test_upload_then_download_latest_round_trips_with_pointer(store, tmp_path):
    src = _models(tmp_path / "out")
    record = store.upload_version(src, TAGS)
    assert record.version.endswith("-run-42") and len(record.files) == 4
    assert store.latest().version == record.version
    got = store.download_version("latest", tmp_path / "dl")
    assert got.name == record.version
    for rel in record.files:
        assert (got / rel).read_bytes() == (src / rel).read_bytes()
    assert [v.version for v in store.list_versions()] == [record.version]
    assert not [p for p in (tmp_path / "dl").iterdir() if p.name.startswith(".rc-partial")]



def test_download_clears_staging_left_by_a_killed_downloader_but_not_a_live_one(store, tmp_path):
    import subprocess
    import sys

    record = store.upload_version(_models(tmp_path / "out"), TAGS)
    dl = tmp_path / "dl"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    killed = dl / f".rc-partial-{record.version}-{dead.stdout.strip()}-0badf00d"
    live = dl / f".rc-partial-{record.version}-{os.getppid()}-0badf00d"
    for staging in (killed, live):
        (staging / "models").mkdir(parents=True)
        (staging / "models" / "model.pt").write_bytes(b"half")
    store.download_version(record.version, dl)
    assert not killed.exists()
    assert live.exists()

def test_sha256_mismatch_is_refused_and_nothing_is_left(store, tmp_path):
    record = store.upload_version(_models(tmp_path / "out"), TAGS)
    _tamper(store, f"models/{record.version}/roster.json", b'["ETH-USD"]')
    with pytest.raises(ChecksumMismatch) as info:
        store.download_version(record.version, tmp_path / "dl")
    assert "roster.json" in str(info.value) and "\n" not in str(info.value)
    assert list((tmp_path / "dl").iterdir()) == []


def test_manifest_listing_an_escaping_path_is_refused(store, tmp_path):
    record = store.upload_version(_models(tmp_path / "out"), TAGS)
    manifest_key = f"models/{record.version}/MANIFEST.json"
    for evil in ("../../escaped.txt", "/etc/passwd", "a/../../b"):
        manifest = {"version": record.version, "created_at": "", "tags": vars(TAGS),
                    "files": {evil: {"size": 1, "sha256": "0" * 64}}}
        store._put_bytes(manifest_key, json.dumps(manifest).encode(), TAGS)  # as a tampered store would
        with pytest.raises(ArtifactPathEscape):
            store.download_version(record.version, tmp_path / "dl")
    assert not (tmp_path / "escaped.txt").exists()


def test_missing_version_and_empty_store_say_so(store, tmp_path):
    with pytest.raises(ArtifactNotFound, match="latest"):
        store.download_version("latest", tmp_path / "dl")
    with pytest.raises(ArtifactNotFound):
        store.read_version("20260101T000000Z-nope")
    with pytest.raises(RemotePathRefused):
        store.read_version("../../etc")


def test_s3_objects_carry_sha256_metadata_and_tags_and_bucket_blocks_public_access(tmp_path, moto_endpoint,
                                                                                   aws_credentials, s3_client):
    bucket = "rc-test-" + secrets.token_hex(6)
    store = S3ArtifactStore(bucket, endpoint_url=moto_endpoint, region="us-east-1", multipart_threshold=5 << 20)
    store.ensure_bucket()
    src = _models(tmp_path / "out")
    (src / "models/BTC-USD/20261123T100000Z/big.bin").write_bytes(os.urandom(12 << 20))  # multipart
    record = store.upload_version(src, TAGS)
    key = f"models/{record.version}/models/BTC-USD/20261123T100000Z/big.bin"
    head = s3_client.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["sha256"] == record.files["models/BTC-USD/20261123T100000Z/big.bin"][1]
    assert "-" in head["ETag"], "a 12 MiB file should have gone up in parts"
    assert store.object_tags(key) == {"run_id": "run-42", "trained_date": "2026-11-23", "gpu": "NVIDIA A10G"}
    block = s3_client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    pointer = json.loads(s3_client.get_object(Bucket=bucket, Key=LATEST_KEY)["Body"].read())
    assert pointer["version"] == record.version and pointer["run_id"] == "run-42"
    got = store.download_version(record.version, tmp_path / "dl")
    assert (got / "models/BTC-USD/20261123T100000Z/big.bin").read_bytes() == \
        (src / "models/BTC-USD/20261123T100000Z/big.bin").read_bytes()


def test_missing_credentials_are_one_clear_line(moto_endpoint, monkeypatch, tmp_path):
    from remote.errors import StorageAccessDenied

    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    store = S3ArtifactStore("rc-nocreds", endpoint_url=moto_endpoint, region="us-east-1")
    with pytest.raises(StorageAccessDenied, match="no AWS credentials") as info:
        store.list_versions()
    assert info.value.exit_code == 2


def test_bad_tags_and_run_ids_are_refused(store, tmp_path):
    with pytest.raises(RemotePathRefused):
        store.upload_version(_models(tmp_path / "out"), ArtifactTags("run;rm", "2026-11-23", "x"))
    with pytest.raises(RemotePathRefused):
        store.upload_version(_models(tmp_path / "out"), ArtifactTags("run-1", "2026-11-23", "gpu$(id)"))


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/abs-evil.txt", "ok/../../evil.txt"])
def test_tar_slip_members_are_refused(tmp_path, name):
    dest = tmp_path / "dest"
    with pytest.raises(ArtifactPathEscape):
        extract_tar_safely(_tar([(tarfile.TarInfo("fine.txt"), b"ok"), (tarfile.TarInfo(name), b"x")]), dest)
    assert not (tmp_path / "evil.txt").exists()


def test_tar_with_symlink_member_is_refused(tmp_path):
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc"
    with pytest.raises(ArtifactPathEscape, match="link"):
        extract_tar_safely(_tar([(link, b"")]), tmp_path / "dest")


def test_write_through_existing_symlink_is_refused(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "sub").symlink_to(outside)
    with pytest.raises(ArtifactPathEscape, match="symlink"):
        safe_join(dest, "sub/x.txt")
    with pytest.raises(ArtifactPathEscape):
        extract_tar_safely(_tar([(tarfile.TarInfo("sub/x.txt"), b"x")]), dest)
    assert not (outside / "x.txt").exists()


# --- the cached download folder ---------------------------------------------------------


@pytest.mark.parametrize("damage", ["edited", "truncated", "deleted", "extra"])
def test_cached_download_that_differs_from_the_manifest_is_fetched_again(store, tmp_path, damage):
    src = _models(tmp_path / "out")
    record = store.upload_version(src, TAGS)
    cached = store.download_version(record.version, tmp_path / "dl")
    model = cached / "models/BTC-USD/20261123T100000Z/model.pt"
    if damage == "edited":
        model.write_bytes(model.read_bytes()[:-1] + b"\x00")  # same size, other bytes
    elif damage == "truncated":
        model.write_bytes(model.read_bytes()[:100])
    elif damage == "deleted":
        model.unlink()
    else:
        (cached / "models/BTC-USD/20261123T100000Z/planted.py").write_text("import os\n")
    again = store.download_version(record.version, tmp_path / "dl")
    assert again == cached
    assert sorted(p.relative_to(again).as_posix() for p in again.rglob("*") if p.is_file()) == sorted(record.files)
    for rel in record.files:
        assert (again / rel).read_bytes() == (src / rel).read_bytes()
    assert [p.name for p in (tmp_path / "dl").iterdir()] == [record.version]  # no stale or staging folder left


def test_intact_cached_download_is_reused_without_fetching(store, tmp_path):
    record = store.upload_version(_models(tmp_path / "out"), TAGS)
    cached = store.download_version(record.version, tmp_path / "dl")
    marker = (cached / "roster.json").stat().st_ino
    # The stored copy is now damaged: a reuse that fetched again would refuse it.
    _tamper(store, f"models/{record.version}/roster.json", b'["ETH-USD"]')
    assert store.download_version(record.version, tmp_path / "dl") == cached
    assert (cached / "roster.json").stat().st_ino == marker


# --- small records: put_bytes / get_bytes -----------------------------------------------------


def test_put_bytes_round_trips_and_a_missing_key_is_none(store):
    body = json.dumps({"passed": True, "id": secrets.token_hex(8)}).encode()
    digest = store.put_bytes("gates/one.json", body)
    assert digest == __import__("hashlib").sha256(body).hexdigest()
    assert store.get_bytes("gates/one.json") == body
    assert store.get_bytes("gates/none.json") is None
    store.put_bytes("gates/one.json", b"{}")
    assert store.get_bytes("gates/one.json") == b"{}"


def test_s3_put_bytes_records_sha256_in_the_object_metadata(moto_endpoint, aws_credentials, s3_client):
    bucket = "rc-test-" + secrets.token_hex(6)
    store = S3ArtifactStore(bucket, endpoint_url=moto_endpoint, region="us-east-1")
    store.ensure_bucket()
    body = b'{"record": 1}'
    digest = store.put_bytes("gates/x.json", body)
    head = s3_client.head_object(Bucket=bucket, Key="gates/x.json")
    assert head["Metadata"]["sha256"] == digest


def test_get_bytes_refuses_bytes_that_differ_from_their_recorded_sha256(store):
    store.put_bytes("gates/one.json", b'{"passed": false}')
    _tamper(store, "gates/one.json", b'{"passed": true}')
    with pytest.raises(ChecksumMismatch) as info:
        store.get_bytes("gates/one.json")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("key", ["models/latest.json", "models/x/MANIFEST.json", "../gates/x.json", "/etc/passwd",
                                 "gates/../models/latest.json", "", "gates/x.json.meta.json"])
def test_put_bytes_refuses_version_keys_and_escaping_paths(store, key):
    with pytest.raises((RemotePathRefused, ArtifactPathEscape)):
        store.put_bytes(key, b"{}")
    with pytest.raises((RemotePathRefused, ArtifactPathEscape)):
        store.get_bytes(key)


def test_local_reader_never_sees_new_bytes_with_the_old_checksum(tmp_path):
    """Object and checksum are two files in a local store; a reader racing a writer must
    get one whole version or the other, never a ChecksumMismatch."""
    import threading

    store = LocalArtifactStore(tmp_path / "store")
    bodies = [b"A" * 4096, b"B" * 8192]
    store.put_bytes("gates/latest.json", bodies[0])
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            store.put_bytes("gates/latest.json", bodies[i % 2])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(300):
            assert store.get_bytes("gates/latest.json") in bodies
    finally:
        stop.set()
        thread.join()


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs, ``except Exception`` does not catch it."""


def check_partial_versions_are_removed_and_nothing_else(store, tmp_path: Path) -> None:
    """An upload of run-42 killed before its manifest leaves files; removing run-42's partial
    versions deletes them and keeps every complete version and another run's partial one."""
    complete = store.upload_version(_models(tmp_path / "a"), TAGS, version="20261121T090000Z-run-42")
    other = ArtifactTags(run_id="run-43", trained_date="2026-11-23", gpu="x")
    put_bytes = store._put_bytes

    def killed_at_the_manifest(key, data, tags):
        if key.endswith("/MANIFEST.json"):
            raise _Killed
        put_bytes(key, data, tags)

    store._put_bytes = killed_at_the_manifest
    for tags, version in ((TAGS, "20261122T090000Z-run-42"), (other, "20261122T090000Z-run-43")):
        with pytest.raises(_Killed):
            store.upload_version(_models(tmp_path / version), tags, version=version)
    del store._put_bytes
    assert store.recorded_sha256("models/20261122T090000Z-run-42/roster.json") is not None

    assert store.remove_partial_versions("run-42") == ["20261122T090000Z-run-42"]
    assert store.recorded_sha256("models/20261122T090000Z-run-42/roster.json") is None
    assert store.recorded_sha256("models/20261122T090000Z-run-43/roster.json") is not None
    assert [v.version for v in store.list_versions()] == [complete.version]
    assert store.latest().version == complete.version
    store.download_version(complete.version, tmp_path / "down")
    assert store.remove_partial_versions("run-42") == []


def test_a_killed_uploads_partial_version_is_removed_and_nothing_else(store, tmp_path):
    check_partial_versions_are_removed_and_nothing_else(store, tmp_path)
