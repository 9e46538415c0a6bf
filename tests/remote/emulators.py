"""The cloud storage emulators the store tests start and stop: real servers, real HTTP.

- GCS: gcp-storage-emulator (PyPI, in requirements.lock), in memory, on a free port.
- Azure Blob: Azurite (npm, `scripts/install-node-deps.sh` installs it under
  ``scripts/node/node_modules``), with an account whose key is made here at run time.

Each is a context manager that waits for the port, yields what a store needs, and stops
the process (its whole group) on the way out.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]
AZURITE = REPO / "scripts" / "node" / "node_modules" / ".bin" / "azurite-blob"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f}s")


@contextmanager
def _process(cmd: list[str], port: int, what: str, env: dict[str, str] | None = None) -> Iterator[None]:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env
    )
    try:
        _wait_for_port(port, proc, what)
        yield
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=2)  # throwaway servers: no need to wait long for a graceful exit
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def gcs_emulator() -> Iterator[str]:
    """A GCS emulator; yields its endpoint (``http://127.0.0.1:PORT``)."""
    port = free_port()
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    with _process([str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"], port, "gcp-storage-emulator"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def azurite(location: Path) -> Iterator[str]:
    """Azurite's blob service; yields a connection string for an account made up here."""
    if not AZURITE.exists():
        raise RuntimeError(f"Azurite is not installed ({AZURITE} missing); run scripts/install-node-deps.sh")
    port = free_port()
    account = "rcstore"
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    env = {**os.environ, "AZURITE_ACCOUNTS": f"{account}:{key}"}
    cmd = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location),
           "--silent", "--skipApiVersionCheck", "--loose"]  # fmt: skip
    with _process(cmd, port, "azurite", env):
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{account};"
        )
