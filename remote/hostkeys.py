"""Pinned SSH host keys: learned once from a trusted publication, refused when they change.

A host's key is trusted the first time only if it appears in a publication the caller
got over a channel it already trusts -- EC2's console output (the ``-----BEGIN SSH HOST
KEY KEYS-----`` block, or the fingerprint block), or the sandbox's endpoint file. It is
then pinned in a per-instance known-hosts file under a directory the caller owns, and
every later connection must offer exactly that key. Nothing is ever accepted blindly:
there is no equivalent of paramiko's ``AutoAddPolicy`` here.

The known-hosts file is in OpenSSH format, keyed by the instance id, so the system
``ssh`` can use it too: ``ssh -o UserKnownHostsFile=FILE -o HostKeyAlias=INSTANCE_ID``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from remote.errors import HostKeyMismatch, HostKeyUnknown, RemotePathRefused

INSTANCE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""What an instance id (the pin's name, also a file name) may look like."""

_KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
_KEY_LINE = re.compile(r"(?P<type>" + "|".join(map(re.escape, _KEY_TYPES)) + r")\s+(?P<b64>[A-Za-z0-9+/]+=*)")
_FINGERPRINT = re.compile(r"SHA256:(?P<fp>[A-Za-z0-9+/]{43})")


@dataclass(frozen=True)
class HostKey:
    """One public host key: its algorithm name and its base64 blob (as in known_hosts)."""

    key_type: str
    base64: str

    @property
    def fingerprint(self) -> str:
        """The OpenSSH SHA256 fingerprint, ``SHA256:...`` without padding."""
        return sha256_fingerprint(base64.b64decode(self.base64))

    def known_hosts_line(self, alias: str) -> str:
        """The OpenSSH known_hosts line for this key under ``alias``."""
        return f"{alias} {self.key_type} {self.base64}"


@dataclass(frozen=True)
class HostKeyPublication:
    """Host keys (whole keys and/or SHA256 fingerprints) published over a trusted channel."""

    keys: tuple[HostKey, ...] = ()
    fingerprints: frozenset[str] = frozenset()

    def vouches_for(self, key: HostKey) -> bool:
        """True when the publication lists this exact key or its fingerprint."""
        return key in self.keys or key.fingerprint in self.fingerprints

    def __bool__(self) -> bool:
        return bool(self.keys or self.fingerprints)


def sha256_fingerprint(key_blob: bytes) -> str:
    """OpenSSH's ``SHA256:`` fingerprint of a raw public key blob."""
    digest = hashlib.sha256(key_blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_publication(text: str) -> HostKeyPublication:
    """Read every host key line and SHA256 fingerprint out of a publication's text.

    Accepts EC2 console output (either block), a known_hosts-style file, or a bare
    ``ssh-ed25519 AAAA...`` line; blobs that do not decode are ignored.
    """
    keys: list[HostKey] = []
    for match in _KEY_LINE.finditer(text):
        try:
            base64.b64decode(match["b64"], validate=True)
        except (binascii.Error, ValueError):
            continue
        key = HostKey(match["type"], match["b64"])
        if key not in keys:
            keys.append(key)
    fingerprints = frozenset("SHA256:" + m["fp"] for m in _FINGERPRINT.finditer(text))
    return HostKeyPublication(tuple(keys), fingerprints)


def check_instance_id(instance_id: str) -> str:
    """Return ``instance_id`` if it is safe as a pin name and file name, else refuse it."""
    if not INSTANCE_ID_PATTERN.match(instance_id or ""):
        raise RemotePathRefused(
            f"instance id {instance_id!r} is not a plain name (letters, digits, . _ -); use the id the provider gave"
        )
    return instance_id


class HostKeyStore:
    """Per-instance known-hosts files under one directory the caller owns."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path_for(self, instance_id: str) -> Path:
        """The OpenSSH known-hosts file that pins ``instance_id``."""
        return self.directory / f"{check_instance_id(instance_id)}.known_hosts"

    def pinned(self, instance_id: str) -> tuple[HostKey, ...]:
        """The keys pinned for the instance; empty when it was never pinned."""
        path = self.path_for(instance_id)
        if not path.exists():
            return ()
        return parse_publication(path.read_text()).keys

    def pin(self, instance_id: str, key: HostKey) -> Path:
        """Record ``key`` as the instance's key (atomically, mode 0600) and return the file."""
        path = self.path_for(instance_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.known_hosts_line(instance_id) + "\n")
        os.replace(tmp, path)
        return path

    def forget(self, instance_id: str) -> None:
        """Drop the pin (the instance was terminated; its id will never come back)."""
        self.path_for(instance_id).unlink(missing_ok=True)

    def verify(
        self, instance_id: str, offered: HostKey, where: str, publication: HostKeyPublication | str | None
    ) -> Path:
        """Accept ``offered`` for the instance or raise; pins it on first trusted sight.

        - pinned and equal: accepted.
        - pinned and different: HostKeyMismatch (never re-pinned silently).
        - not pinned: accepted and pinned only if ``publication`` vouches for it;
          HostKeyMismatch if the publication lists other keys, HostKeyUnknown if there
          is no publication at all.
        """
        path = self.path_for(instance_id)
        pinned = self.pinned(instance_id)
        if pinned:
            if offered in pinned:
                return path
            raise HostKeyMismatch(
                f"host key for {instance_id} at {where} changed: pinned {pinned[0].fingerprint}, "
                f"offered {offered.fingerprint}; refusing to connect (if the host was really "
                f"rebuilt, delete {path} and connect again with its new published key)"
            )
        if isinstance(publication, str):
            publication = parse_publication(publication)
        if not publication:
            raise HostKeyUnknown(
                f"no pinned host key for {instance_id} at {where} and no published key to check it "
                f"against; pass the instance's console output or endpoint file"
            )
        if not publication.vouches_for(offered):
            raise HostKeyMismatch(
                f"host {where} for {instance_id} offered key {offered.fingerprint} which its "
                f"published keys do not list; refusing to connect (possible interception)"
            )
        return self.pin(instance_id, offered)
