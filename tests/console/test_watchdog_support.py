"""Shared fixtures for the watchdog, cost and notification tests (imported by them; no tests here).

A real moto server over HTTP on 127.0.0.1, the real EC2 spot provider pointed at it, a
real state store, and a real HTTP receiver for Apprise's json:// scheme. AWS credentials
are random strings made per test; the developer's AWS_* environment and HOME are hidden.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from console.settings import Settings
from console.state import StateStore
from remote.errors import ProviderError
from remote.providers.aws_client import AwsCredentials, AwsTarget
from remote.providers.ec2 import Ec2SpotProvider

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    for name in list(os.environ):
        if name.startswith(("AWS_", "RC_", "TELEGRAM_")) or name in ("BOTO_CONFIG",):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def creds() -> AwsCredentials:
    return AwsCredentials("AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))


@pytest.fixture
def ec2(moto_url: str, creds: AwsCredentials) -> Any:
    import boto3
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10).read()
    return boto3.client("ec2", region_name=REGION, endpoint_url=moto_url, aws_access_key_id=creds.access_key_id,
                        aws_secret_access_key=creds.secret_access_key)


@pytest.fixture
def provider(ec2: Any, moto_url: str, creds: AwsCredentials, tmp_path: Path) -> Ec2SpotProvider:
    return Ec2SpotProvider(AwsTarget(REGION, moto_url, creds, max_attempts=1), key_dir=tmp_path / "keys",
                           price_source="moto", poll_interval_s=0.05)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore.open(tmp_path / "state")


def make_settings(state_dir: Path, **overrides: Any) -> Settings:
    watchdog = {"interval_s": 1.0, "heartbeat_timeout_s": 10_000.0, "idle_timeout_s": 10_000.0,
                "upload_grace_s": 60.0, **overrides.pop("watchdog", {})}
    budget = {"run_usd": 100.0, "daily_usd": 1000.0, "instance_usd": 1000.0, **overrides.pop("budget", {})}
    return Settings(state_dir=state_dir, watchdog=watchdog, budget=budget, **overrides)


def launch(ec2: Any, *, run_id: str | None = None, managed: bool = True, max_minutes: int | None = None,
           instance_type: str = "g4dn.xlarge") -> str:
    """An instance as the provider's launch leaves it (tags), through the real EC2 API on moto."""
    image = "ami-0123456789abcdef0"  # moto accepts any image id; listing its 1300 images is slow
    tags = [{"Key": "Name", "Value": "test"}]
    if managed:
        tags.append({"Key": "managed-by", "Value": "retrain-console"})
    if run_id:
        tags.append({"Key": "run-id", "Value": run_id})
    if max_minutes is not None:
        tags.append({"Key": "max-runtime-minutes", "Value": str(max_minutes)})
    out = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType=instance_type,
                            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
    return out["Instances"][0]["InstanceId"]


def state_of(ec2: Any, instance_id: str) -> str:
    out = ec2.describe_instances(InstanceIds=[instance_id])
    return out["Reservations"][0]["Instances"][0]["State"]["Name"]


def new_run(store: StateStore, run_id: str, *, status: str = "running", params: dict | None = None,
            steps: tuple[str, ...] = ("launch", "train", "upload", "terminate")) -> str:
    store.create_run(run_id, checklist="retrain", checklist_path="retrain", profile="sandbox",
                     params=params or {}, steps=[(s, s, s) for s in steps])
    if status != "pending":
        store.set_run_status(run_id, status)
    store.heartbeat(run_id)
    return run_id


class FlakyTerminate:
    """The real provider, whose first `failures` terminate calls fail as AWS throttling would."""

    def __init__(self, inner: Ec2SpotProvider, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0
        self.name = inner.name

    def terminate(self, instance_id: str, *, timeout_s: float = 300.0):
        self.calls += 1
        if self.calls <= self.failures:
            raise ProviderError("TerminateInstances failed: RequestLimitExceeded: slow down", code="RequestLimitExceeded")
        return self.inner.terminate(instance_id, timeout_s=timeout_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Receiver:
    """A local HTTP server that records what Apprise's json:// posts to it."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)

    def titles(self) -> list[str]:
        return [r.get("title", "") for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append(json.loads(body or b"{}"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec = Receiver(f"json://127.0.0.1:{server.server_address[1]}/notify", got)
    yield rec
    server.shutdown()
    server.server_close()
