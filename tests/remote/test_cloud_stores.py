"""Artifact stores beyond S3, against their real emulators (gcp-storage-emulator, Azurite):
versions up and down with sha256 both ways, damaged objects refused, bad credentials named
in one line, and `console models sync` between clouds, resumable and never half-complete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from remote.errors import ChecksumMismatch, StorageAccessDenied
from remote.storage import ArtifactTags, LocalArtifactStore
from remote.storage.azure import AzureArtifactStore
from remote.storage.gcs import GcsArtifactStore
from remote.storage.mirror import mirror_versions
from remote.storage.urls import StoreEndpoints, StoreUrlInvalid, open_store, parse_store_url
from remote.storage.versions import VersionedStore
from tests.console.cli import assert_one_line_error, console
from tests.remote.emulators import azurite, gcs_emulator
from tests.remote.test_storage_store import check_partial_versions_are_removed_and_nothing_else

pytestmark = pytest.mark.slow
TAGS = ArtifactTags(run_id="run-7", trained_date="2026-12-05", gpu="none")


@pytest.fixture(scope="module")
def gcs_endpoint() -> Iterator[str]:
    with gcs_emulator() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def azure_connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with azurite(tmp_path_factory.mktemp("azurite")) as connection:
        yield connection


def _model_set(root: Path) -> Path:
    (root / "models" / "BTC-USD").mkdir(parents=True)
    (root / "models" / "BTC-USD" / "weights.npz").write_bytes(bytes(range(256)) * 40)
    (root / "champions").mkdir()
    (root / "champions" / "BTC-USD.json").write_text(json.dumps({"symbol": "BTC-USD"}))
    return root


@pytest.fixture(params=["gs", "az"])
def cloud(request: pytest.FixtureRequest, gcs_endpoint: str, azure_connection: str) -> VersionedStore:
    name = request.node.name.split("[")[0].replace("_", "-")[:40].strip("-")
    if request.param == "gs":
        store: VersionedStore = GcsArtifactStore("rc-models", prefix=name, endpoint=gcs_endpoint)
    else:
        store = AzureArtifactStore("rc-models", prefix=name, connection_string=azure_connection)
    store.ensure_bucket()
    return store


def test_a_version_goes_up_and_comes_down_verified(cloud: VersionedStore, tmp_path: Path) -> None:
    record = cloud.upload_version(_model_set(tmp_path / "set"), TAGS)
    assert [v.version for v in cloud.list_versions()] == [record.version]
    assert cloud.latest() is not None and cloud.latest().version == record.version  # type: ignore[union-attr]
    key = f"models/{record.version}/champions/BTC-USD.json"
    assert cloud.recorded_sha256(key) == record.files["champions/BTC-USD.json"][1]
    folder = cloud.download_version("latest", tmp_path / "down")
    assert (folder / "models" / "BTC-USD" / "weights.npz").read_bytes() == bytes(range(256)) * 40
    assert cloud.recorded_sha256("models/nothing/here") is None


def test_a_killed_uploads_partial_version_is_removed_and_nothing_else(cloud: VersionedStore, tmp_path: Path) -> None:
    check_partial_versions_are_removed_and_nothing_else(cloud, tmp_path)


def test_a_changed_object_is_refused_on_download(cloud: VersionedStore, tmp_path: Path) -> None:
    record = cloud.upload_version(_model_set(tmp_path / "set"), TAGS)
    forged = tmp_path / "forged"
    forged.write_text('{"symbol": "ETH-USD"}')
    # Replaced behind our back, keeping the sha256 it recorded: the manifest catches it.
    cloud._put_file(f"models/{record.version}/champions/BTC-USD.json", forged, record.files["champions/BTC-USD.json"][1], TAGS)
    with pytest.raises(ChecksumMismatch, match="BTC-USD.json"):
        cloud.download_version(record.version, tmp_path / "down")
    assert not (tmp_path / "down" / record.version).exists()


def test_models_move_between_clouds_and_an_interrupted_copy_resumes(
    gcs_endpoint: str, azure_connection: str, tmp_path: Path
) -> None:
    local = LocalArtifactStore(tmp_path / "local")
    first = local.upload_version(_model_set(tmp_path / "a"), TAGS, version="20261201T000000Z-run-7")
    second = local.upload_version(_model_set(tmp_path / "b"), TAGS, version="20261202T000000Z-run-8")
    gcs = GcsArtifactStore("rc-mirror", prefix="copy", endpoint=gcs_endpoint)
    az = AzureArtifactStore("rc-mirror", prefix="copy", connection_string=azure_connection)

    class Cut(Exception):
        pass

    def cut_after_one(version: str, rel: str) -> None:
        if version == second.version:
            raise Cut

    with pytest.raises(Cut):
        mirror_versions(local, gcs, on_file=cut_after_one)
    # The half-copied version is not listed, and latest does not point at it.
    assert [v.version for v in gcs.list_versions()] == [first.version]
    assert gcs.latest() is None
    report = mirror_versions(local, gcs)
    assert report.copied == [second.version] and report.already == [first.version]
    assert report.files_skipped == 1 and report.files_sent == len(second.files) - 1
    assert gcs.latest().version == second.version  # type: ignore[union-attr]
    # On to Azure, then home again, byte for byte.
    mirror_versions(gcs, az)
    back = LocalArtifactStore(tmp_path / "back")
    assert mirror_versions(az, back).latest == second.version
    folder = back.download_version("latest", tmp_path / "down")
    assert (folder / "champions" / "BTC-USD.json").read_text() == '{"symbol": "BTC-USD"}'
    assert mirror_versions(az, back).copied == []


def test_bad_azure_credentials_are_named_in_one_line(azure_connection: str) -> None:
    key = azure_connection.split("AccountKey=")[1].split(";")[0]
    wrong = azure_connection.replace(key, key[::-1])
    with pytest.raises(StorageAccessDenied) as err:
        AzureArtifactStore("rc-models", connection_string=wrong).list_versions()
    message = str(err.value)
    assert "AZURE_STORAGE_CONNECTION_STRING" in message and "az://rc-models" in message
    assert key[::-1] not in message and "\n" not in message


def test_bad_google_credentials_are_named_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "service-account.json"
    bad.write_text("{not json")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(bad))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    with pytest.raises(StorageAccessDenied) as err:
        GcsArtifactStore("rc-models").list_versions()
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(err.value) and "gs://rc-models" in str(err.value)


def test_store_urls_are_checked_before_anything_is_contacted(tmp_path: Path) -> None:
    assert parse_store_url("gs://bucket/a/b").prefix == "a/b"
    assert parse_store_url("az://models").bucket == "models"
    assert isinstance(open_store(str(tmp_path / "here"), StoreEndpoints()), LocalArtifactStore)
    for bad in ("ftp://x/y", "gs:///nobucket", "s3://"):
        with pytest.raises(StoreUrlInvalid):
            parse_store_url(bad)


def test_console_models_sync_copies_between_clouds(gcs_endpoint: str, azure_connection: str, tmp_path: Path) -> None:
    local = LocalArtifactStore(tmp_path / "local")
    record = local.upload_version(_model_set(tmp_path / "set"), TAGS)
    env = {"STORAGE_EMULATOR_HOST": gcs_endpoint, "AZURE_STORAGE_CONNECTION_STRING": azure_connection}
    up = console("models", "sync", str(tmp_path / "local"), "gs://rc-cli/models-copy", env=env)
    assert up.returncode == 0, up.stderr
    assert "1 version(s) copied" in up.stdout
    across = console("models", "sync", "gs://rc-cli/models-copy", "az://rc-cli/copy", env=env)
    assert across.returncode == 0, across.stderr
    again = console("models", "sync", "gs://rc-cli/models-copy", "az://rc-cli/copy", env=env)
    assert "0 version(s) copied" in again.stdout and "1 already complete" in again.stdout
    assert AzureArtifactStore("rc-cli", prefix="copy", connection_string=azure_connection).latest().version == (  # type: ignore[union-attr]
        record.version
    )
    bad = console("models", "sync", "ftp://nowhere/x", "gs://rc-cli/y", env=env)
    assert_one_line_error(bad, 2, "ftp://")
