"""Errors raised by `remote/` (which cannot import `console`).

They follow the console's convention: ``str(exc)`` is one line that says what was wrong
and what to do, and the class attribute ``exit_code`` is the documented exit code
(1 failed, 2 bad input, 3 guard refused). Third-party errors (paramiko, botocore) are
translated into these at the module boundary and re-raised ``from exc``::

    RemoteError                  exit 1   base
     +-- HostUnreachable         exit 1   TCP connect/SSH handshake failed or timed out
     |    +-- ConnectionLost     exit 1   an open connection broke mid-operation
     +-- HostKeyMismatch         exit 3   the host offered a key other than the pinned one
     +-- HostKeyUnknown          exit 2   no pinned key and no trusted publication given
     +-- AuthFailed              exit 2   the host refused our private key
     +-- RemoteCommandFailed     exit 1   a remote command exited non-zero or timed out
     +-- RemotePathRefused       exit 2   a path with shell metacharacters or escaping its root
     +-- SyncFailed              exit 1   a delta sync could not complete
     +-- StorageError            exit 1   the artifact store failed (S3 / local)
          +-- ArtifactPathEscape exit 2   an artifact path escapes the target directory
          +-- ChecksumMismatch   exit 1   a downloaded artifact's sha256 differs
          +-- ArtifactNotFound   exit 2   no such artifact / pointer
          +-- StorageAccessDenied exit 2  no credentials, or the bucket refused us
"""

from __future__ import annotations


class RemoteError(Exception):
    """Base of every error `remote/` raises on purpose; ``str()`` is one line."""

    exit_code = 1


# --- SSH runner, sync, storage (remote/ssh.py, remote/sync.py, remote/storage.py) ---


class HostUnreachable(RemoteError):
    """The host did not answer on its SSH port, or the handshake failed."""


class HostKeyMismatch(RemoteError):
    """The host offered a key that differs from the one pinned for it."""

    exit_code = 3


class HostKeyUnknown(RemoteError):
    """No key is pinned for the host and no trusted publication of it was given."""

    exit_code = 2


class AuthFailed(RemoteError):
    """The host refused the private key we offered."""

    exit_code = 2


class ConnectionLost(HostUnreachable):
    """An established connection broke mid-operation (the runner can reconnect)."""


class RemoteCommandFailed(RemoteError):
    """A remote command exited non-zero (or timed out); carries command, code and output tail."""

    def __init__(
        self, message: str, *, command: str = "", exit_status: int | None = None, output_tail: str = ""
    ) -> None:
        super().__init__(message)
        self.command = command
        """The command as sent to the host (already quoted)."""
        self.exit_status = exit_status
        """The remote exit status; None when it timed out or the channel closed."""
        self.output_tail = output_tail
        """The last lines of the command's combined output."""


class RemotePathRefused(RemoteError):
    """A path or name was refused before it reached a shell or a filesystem."""

    exit_code = 2


class SyncFailed(RemoteError):
    """A delta sync could not complete."""


class StorageError(RemoteError):
    """The artifact store failed."""


class ArtifactPathEscape(StorageError):
    """An artifact key or archive member would land outside the target directory."""

    exit_code = 2


class ChecksumMismatch(StorageError):
    """A downloaded artifact's sha256 differs from the one recorded at upload."""


class ArtifactNotFound(StorageError):
    """The artifact, version or pointer does not exist in the store."""

    exit_code = 2


# --- Cloud providers and the sandbox (remote/providers/, remote/sandbox/) ---
#
#    RemoteError
#     +-- ProviderError            exit 1   the cloud API failed (after translation)
#     |    +-- CredentialsMissing  exit 2   no usable credentials / role for the cloud API
#     |    +-- UnknownInstanceType exit 2   the instance type does not exist in the region
#     |    +-- UnknownRegion       exit 2   the region name is not one the cloud knows
#     |    +-- NoAmiFound          exit 2   no machine image matches the name pattern
#     |    +-- NoCapacity          exit 1   no zone/type combination had spot capacity
#     |    +-- InstanceNotFound    exit 2   no such instance
#     |    +-- TerminateUnconfirmed exit 1  terminate was asked but not confirmed in time
#     +-- SandboxError             exit 1   the sandbox daemon failed to start / answer
#          +-- SandboxNotRunning   exit 2   the sandbox is down (run `console sandbox up`)
#          +-- SandboxHostUnknown  exit 2   no sandbox SSH endpoint for that instance


class ProviderError(RemoteError):
    """A cloud provider call failed; ``str()`` names the call and the provider's code."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        """The provider's own error code (e.g. ``InsufficientInstanceCapacity``), if any."""


class CredentialsMissing(ProviderError):
    """No usable credentials (or role) for the cloud API."""

    exit_code = 2


class UnknownInstanceType(ProviderError):
    """The instance type is not offered in the region."""

    exit_code = 2


class UnknownRegion(ProviderError):
    """The region is not one the cloud knows."""

    exit_code = 2


class NoAmiFound(ProviderError):
    """No machine image matches the configured name pattern."""

    exit_code = 2


class NoCapacity(ProviderError):
    """Every zone and instance type tried was out of spot capacity (or above the max price)."""

    def __init__(self, message: str, *, tried: tuple[str, ...] = ()) -> None:
        super().__init__(message, code="NoCapacity")
        self.tried = tried
        """One entry per attempt: ``"g5.xlarge in us-east-1a: InsufficientInstanceCapacity"``."""


class InstanceNotFound(ProviderError):
    """No instance with that id (or it is not one the console manages)."""

    exit_code = 2


class TerminateUnconfirmed(ProviderError):
    """Terminate was requested but the instance did not reach `terminated` in time."""


class SandboxError(RemoteError):
    """The sandbox daemon could not be started or did not answer."""


class SandboxNotRunning(SandboxError):
    """The sandbox daemon is not running."""

    exit_code = 2


class SandboxHostUnknown(SandboxError):
    """The sandbox has no SSH endpoint for that instance (not running, or terminated)."""

    exit_code = 2


class StorageAccessDenied(StorageError):
    """No credentials were found, or the store refused them."""

    exit_code = 2
