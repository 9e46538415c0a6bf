"""One sandbox SSH host: a real SSH server standing in for one EC2 instance.

Each host listens on its own 127.0.0.1 port with its own ed25519 host key and has its
own root directory, which is the instance's HOME. It admits only the public keys in
``<root>/.ssh/authorized_keys`` (written from the instance's EC2 key pair at boot, as
cloud-init does), really runs commands with ``/bin/sh -c`` in the root, serves SFTP
(relative paths and ``~`` resolve to the root; an absolute path outside the root means the
instance's own one, under the root: ``/etc/x`` is ``<root>/etc/x``), and runs the instance's
user-data once at boot.

Everything a host does stays inside its root: commands and user-data run under Landlock
(`remote.sandbox.confine`: read-only everywhere else), and an SFTP path that resolves
outside the root (through a symlink, say) is refused with "permission denied".
Every process started on the host carries ``RC_SANDBOX_INSTANCE_ID`` in its
environment; that is how the fleet finds and kills them all when the instance goes away.

Sandbox stand-ins in ``<root>/.sandbox/bin`` (first on PATH): ``shutdown``, ``poweroff``
and ``halt`` ask the fleet to power the instance off (``shutdown -h +M`` schedules it M
minutes ahead, ``shutdown -c`` cancels), and ``sudo`` simply runs its command.
``python3`` and ``python`` run the sandbox daemon's own interpreter: the host stands in for
the Deep Learning AMI, whose Python comes with PyTorch, numpy, pandas and pyarrow.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncssh

from remote.sandbox.confine import Confinement

_SHUTDOWN_SHIM = """#!/bin/sh
# Sandbox stand-in for shutdown(8)/poweroff(8)/halt(8): asks the sandbox to power this
# instance off. With InstanceInitiatedShutdownBehavior=terminate that terminates it.
name=$(basename "$0")
when=now
for arg in "$@"; do
  case "$arg" in
    -c) when=cancel ;;
    now|+*) when="$arg" ;;
  esac
done
[ "$name" = shutdown ] || when=now
req="$RC_SANDBOX_ROOT/.sandbox/shutdown"
printf '%s\\n' "$when" > "$req.$$" && mv -f "$req.$$" "$req"
[ "$when" = cancel ] || echo "sandbox: power-off requested ($when)" >&2
"""

_SUDO_SHIM = """#!/bin/sh
# Sandbox stand-in for sudo: there is only one user on a sandbox host.
while [ $# -gt 0 ]; do
  case "$1" in
    -u|-g) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
exec "$@"
"""


class SandboxHost:
    """An SSH server for one instance. `start` boots it, `stop` takes it away."""

    def __init__(
        self,
        instance_id: str,
        root: Path,
        host_key_path: Path,
        *,
        public_address: str | None = None,
        user: str = "ubuntu",
    ) -> None:
        self.instance_id = instance_id
        self.root = root
        self.host_key_path = host_key_path
        self.public_address = public_address
        self.user = user
        self.port = 0
        self.booted_at: datetime | None = None
        self._host_key: asyncssh.SSHKey | None = None
        self._server: Any = None
        self._user_data: subprocess.Popen[bytes] | None = None
        self.confinement: Confinement | None = None
        """Keeps this host's commands inside its root (built at `start`)."""

    # --- lifecycle ------------------------------------------------------------------

    async def start(self, authorized_keys: list[str], user_data: bytes | None) -> None:
        """Prepare the root, listen on a free 127.0.0.1 port, and run user-data once."""
        for sub in (".ssh", ".sandbox/bin", ".sandbox/spot", "var/log", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.confinement = self.confinement or Confinement(self.root)
        auth = self.root / ".ssh" / "authorized_keys"
        auth.write_text("".join(f"{k.strip()}\n" for k in authorized_keys))
        auth.chmod(0o600)
        self._write_shims()
        self._host_key = self._load_or_make_host_key()
        self._server = await asyncssh.create_server(
            lambda: _AuthOnlyAuthorizedKeys(self.root),
            "127.0.0.1",
            0,
            server_host_keys=[self._host_key],
            process_factory=self._run_process,
            sftp_factory=lambda chan: _HomeSftp(chan, self.root),
            encoding=None,
            allow_scp=True,
            keepalive_interval=15,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.booted_at = datetime.now(timezone.utc)
        # Like cloud-init: user-data runs at the first boot only, not after a stop/start.
        marker = self.root / ".sandbox" / "user-data-ran"
        if user_data and not marker.exists():
            marker.touch()
            self._start_user_data(user_data)

    async def stop(self) -> None:
        """Close the SSH port and end every process of this instance."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await asyncio.to_thread(kill_instance_processes, self.instance_id)
        if self._user_data is not None:
            self._user_data.poll()
        if self.confinement is not None:
            self.confinement.close()
            self.confinement = None

    def reap(self) -> None:
        """Collect user-data's exit status so it does not linger as a zombie."""
        if self._user_data is not None and self._user_data.poll() is not None:
            self._user_data = None

    # --- what the fleet publishes -------------------------------------------------------

    @property
    def host_key_line(self) -> str:
        assert self._host_key is not None
        return " ".join(self._host_key.export_public_key("openssh").decode("ascii").split()[:2])

    @property
    def fingerprint(self) -> str:
        assert self._host_key is not None
        return self._host_key.get_fingerprint("sha256")

    def endpoint(self) -> dict[str, Any]:
        """This host's entry in the endpoints document."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "host_key": self.host_key_line,
            "fingerprint": self.fingerprint,
            "root": str(self.root),
            "confined": bool(self.confinement and self.confinement.available),
            "user": self.user,
            "public_address": self.public_address,
            "booted_at": self.booted_at.isoformat() if self.booted_at else None,
        }

    def console_output(self) -> str:
        """Console text in cloud-init's format, host keys included (how EC2 publishes them)."""
        stamp = self.booted_at.strftime("%Y-%m-%d %H:%M:%S") if self.booted_at else ""
        bits = self.fingerprint.split(":", 1)
        return (
            f"[sandbox] retrain-console sandbox instance {self.instance_id} booted {stamp} UTC\n"
            "ec2: \n"
            "ec2: #############################################################\n"
            "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
            f"ec2: 256 {bits[0]}:{bits[1]} root@{self.instance_id} (ED25519)\n"
            "ec2: -----END SSH HOST KEY FINGERPRINTS-----\n"
            "ec2: #############################################################\n"
            "-----BEGIN SSH HOST KEY KEYS-----\n"
            f"{self.host_key_line} root@{self.instance_id}\n"
            "-----END SSH HOST KEY KEYS-----\n"
        )

    # --- internals ------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The environment commands see: a clean one, never the daemon's own."""
        return {
            "PATH": f"{self.root / '.sandbox' / 'bin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(self.root),
            "TMPDIR": str(self.root / "tmp"),
            "USER": self.user,
            "LOGNAME": self.user,
            "SHELL": "/bin/sh",
            "LANG": "C.UTF-8",
            "RC_SANDBOX_INSTANCE_ID": self.instance_id,
            "RC_SANDBOX_ROOT": str(self.root),
            "RC_SANDBOX_SPOT_NOTICE": str(self.root / ".sandbox" / "spot" / "instance-action"),
        }

    def _write_shims(self) -> None:
        bin_dir = self.root / ".sandbox" / "bin"
        python = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n'
        for name, text in (
            ("shutdown", _SHUTDOWN_SHIM),
            ("poweroff", _SHUTDOWN_SHIM),
            ("halt", _SHUTDOWN_SHIM),
            ("sudo", _SUDO_SHIM),
            ("python3", python),
            ("python", python),
        ):
            path = bin_dir / name
            path.write_text(text)
            path.chmod(0o755)

    def _load_or_make_host_key(self) -> asyncssh.SSHKey:
        if self.host_key_path.exists():
            return asyncssh.read_private_key(str(self.host_key_path))
        key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.host_key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.export_private_key())
        return key

    def _start_user_data(self, user_data: bytes) -> None:
        script = self.root / ".sandbox" / "user-data"
        script.write_bytes(user_data)
        script.chmod(0o700)
        log = open(self.root / "var" / "log" / "cloud-init-output.log", "ab")
        if user_data.startswith(b"#cloud-config"):
            log.write(b"sandbox: #cloud-config user-data is not run in the sandbox\n")
            log.close()
            return
        argv = [str(script)] if user_data.startswith(b"#!") else ["/bin/sh", str(script)]
        try:
            self._user_data = subprocess.Popen(
                argv,
                cwd=self.root,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self._confine,
            )
        finally:
            log.close()

    def _confine(self) -> None:
        """Set up a command's process between fork and exec, as sshd sets up a session's child:
        default signal dispositions (this server may run with SIGHUP or SIGINT ignored, under
        nohup or a shell's ``&``, and a command must still die of the hang-up), then confinement."""
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        if self.confinement is not None:
            self.confinement.restrict()

    async def _run_process(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        argv = ["/bin/sh", "-c", command] if command else ["/bin/sh"]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self.root,
                env=self.environment(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=self._confine,
            )
        except OSError as exc:
            process.stderr.write(f"sandbox: cannot start /bin/sh: {exc}\n".encode())
            process.exit(127)
            return
        hangup = asyncio.ensure_future(_hangup_when_closed(process, proc))
        feed = asyncio.ensure_future(_feed_stdin(process, proc))
        try:
            await asyncio.gather(_pump(proc.stdout, process.stdout), _pump(proc.stderr, process.stderr))
            code = await proc.wait()
        finally:
            feed.cancel()
        if not process.is_closing():
            process.exit(code if code >= 0 else 128 - code)
        hangup.cancel()


class _AuthOnlyAuthorizedKeys(asyncssh.SSHServer):
    """Public-key authentication against ``<root>/.ssh/authorized_keys``, nothing else."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        try:
            lines = (self.root / ".ssh" / "authorized_keys").read_text().splitlines()
        except OSError:
            return False
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                if asyncssh.import_public_key(line).public_data == key.public_data:
                    return True
            except (asyncssh.KeyImportError, ValueError):
                continue
        return False


class _HomeSftp(asyncssh.SFTPServer):
    """SFTP confined to the instance root: relative paths start there (its HOME, like a real
    login), an absolute path outside it is the instance's own (``/etc/x`` is ``<root>/etc/x``),
    and a path that resolves outside the root, symlinks followed, is refused."""

    def __init__(self, chan: Any, root: Path) -> None:
        super().__init__(chan)
        self._home = os.fsencode(root)
        self._real_home = os.path.realpath(self._home)

    def map_path(self, path: bytes) -> bytes:
        if path.startswith(b"~"):
            path = path[1:].lstrip(b"/")
        if not path:
            return self._home
        if not path.startswith(b"/"):
            path = os.path.join(self._home, path)
        elif not _within(os.path.normpath(path), self._home):
            path = self._home + os.path.normpath(path)
        if not _within(os.path.realpath(path), self._real_home):
            raise asyncssh.SFTPPermissionDenied("outside the instance's root")
        return path


def _within(path: bytes, root: bytes) -> bool:
    return path == root or path.startswith(root.rstrip(b"/") + b"/")


async def _pump(source: asyncio.StreamReader | None, target: Any) -> None:
    if source is None:
        return
    while True:
        chunk = await source.read(65536)
        if not chunk:
            return
        try:
            target.write(chunk)
            await target.drain()
        except (asyncssh.Error, BrokenPipeError, ConnectionError):
            # The client went away; keep draining so the command is not blocked on a pipe.
            continue


async def _feed_stdin(process: asyncssh.SSHServerProcess, proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    try:
        while True:
            data = await process.stdin.read(65536)
            if not data:
                break
            proc.stdin.write(data)
            await proc.stdin.drain()
    except (asyncssh.Error, BrokenPipeError, ConnectionError):
        pass
    finally:
        try:
            proc.stdin.close()
        except (BrokenPipeError, ConnectionError):
            pass


async def _hangup_when_closed(process: asyncssh.SSHServerProcess, proc: asyncio.subprocess.Process) -> None:
    # Like sshd: when the client disconnects, the command's process group gets SIGHUP.
    # Anything started with setsid/nohup survives, as it would on a real host.
    await process.channel.wait_closed()
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGHUP)
        except ProcessLookupError:
            pass


def kill_instance_processes(instance_id: str, grace_s: float = 1.0) -> int:
    """SIGTERM, then SIGKILL, every process whose environment names this instance."""
    return _kill_matching(lambda env: env.get("RC_SANDBOX_INSTANCE_ID") == instance_id, grace_s)


def kill_processes_under(instances_dir: Path, grace_s: float = 1.0) -> int:
    """End every sandbox-host process whose instance root lies under `instances_dir`."""
    prefix = str(instances_dir) + os.sep
    return _kill_matching(lambda env: env.get("RC_SANDBOX_ROOT", "").startswith(prefix), grace_s)


def _kill_matching(matches: Any, grace_s: float) -> int:
    import psutil

    victims = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and matches(proc.environ()):
                victims.append(proc)
        except (psutil.Error, OSError):
            continue
    for proc in victims:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(victims, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return len(victims)
