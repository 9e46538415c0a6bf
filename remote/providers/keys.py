"""SSH key pairs for launched instances: generated here, private half stored 0600.

The private key never leaves the operator's machine: only the public half is imported
into the cloud (EC2 ImportKeyPair), so nothing secret crosses the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from remote.errors import ProviderError


@dataclass(frozen=True)
class KeyPairFiles:
    """A key pair on disk: the private key (0600) and its OpenSSH public line."""

    private_path: Path
    public_line: str


def key_path_for(key_dir: Path, key_name: str) -> Path:
    """Where the private key for `key_name` lives under `key_dir`."""
    return key_dir / f"{key_name}.pem"


def load_or_create(key_dir: Path, key_name: str) -> tuple[KeyPairFiles, bool]:
    """The ed25519 key pair `key_name` under `key_dir`, generated if absent; (files, created)."""
    path = key_path_for(key_dir, key_name)
    if path.exists():
        return KeyPairFiles(path, public_line_of(path)), False
    try:
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = ed25519.Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        _write_private(path, pem)
    except OSError as exc:
        raise ProviderError(f"cannot write the SSH key {path}: {exc.strerror} (check the state directory)") from exc
    return KeyPairFiles(path, public_line_of(path)), True


def public_line_of(private_path: Path) -> str:
    """The OpenSSH public key line (``ssh-ed25519 AAAA...``) of a private key file."""
    try:
        private = serialization.load_ssh_private_key(private_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ProviderError(f"cannot read the SSH key {private_path} (delete it to get a new one)") from exc
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode("ascii")


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the first byte (no chmod window), then renamed into place so a
    # crash never leaves a half-written key that later looks valid.
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
