"""The local runner: the `remote.runner.Runner` protocol in a directory on this machine, through invoke.

A directory stands for a host's login directory: commands run there (through invoke's
`Context`, the local half of Fabric), relative paths resolve there, detached jobs keep
their files there (`remote.jobs`, the same code as over SSH), and the tar streams of
`remote.sync` go through local pipes. So delta sync, host readings, the ``ssh`` backend
and the checkpoint shelf run for real, unchanged, with no SSH server and no cloud: the
fake provider (`remote.providers.fake`) hands out such directories as its machines.

``env`` is added to every command's environment (a fake machine says who it is to the
training guard the way a sandbox host does: ``RC_SANDBOX_INSTANCE_ID``).
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from invoke import Context
from invoke.exceptions import CommandTimedOut

from remote.errors import RemoteCommandFailed
from remote.jobs import DetachedJobs
from remote.runner import CommandResult, check_remote_path, quote_command

_KEEP_CHARS = 4 << 20


@dataclass(frozen=True)
class LocalTarget:
    """A directory on this machine standing for one host."""

    instance_id: str
    root: Path
    """The host's login directory."""
    jobs_dir: str = ".rc-jobs"
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"local:{self.root}"


class _Lines(io.TextIOBase):
    """invoke's output stream: whole lines to ``on_output``, the last 4 MiB kept."""

    def __init__(self, on_output: Callable[[str], None] | None) -> None:
        self.on_output = on_output
        self.pending = ""
        self.kept: list[str] = []
        self.kept_chars = 0
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.pending += text
            *lines, self.pending = self.pending.split("\n")
            for line in lines:
                self._line(line)
        return len(text)

    def finish(self) -> str:
        with self.lock:
            if self.pending:
                self._line(self.pending)
                self.pending = ""
            return "\n".join(self.kept)

    def _line(self, line: str) -> None:
        self.kept.append(line)
        self.kept_chars += len(line) + 1
        while self.kept_chars > _KEEP_CHARS and self.kept:
            self.kept_chars -= len(self.kept.pop(0)) + 1
        if self.on_output is not None:
            self.on_output(line)


class LocalRunner(DetachedJobs):
    """Commands, detached jobs, tails and files in one directory (see the module docstring)."""

    def __init__(self, target: LocalTarget, *, sleep: Callable[[float], None] = time.sleep) -> None:
        check_remote_path(target.jobs_dir)
        self.target = target
        self.jobs_dir = target.jobs_dir
        self._sleep = sleep
        Path(target.root).mkdir(parents=True, exist_ok=True)
        self._context = Context()

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return True

    @property
    def host_key(self) -> None:
        """No SSH, no host key to pin."""
        return None

    @property
    def home(self) -> str:
        return str(Path(self.target.root).resolve())

    def close(self) -> None:
        """Nothing to close: detached jobs keep running."""

    def reconnect(self, max_wait_s: float = 60.0) -> int:
        return 1

    def _path(self, remote: str) -> Path:
        check_remote_path(remote)
        return Path(remote) if remote.startswith("/") else Path(self.home) / remote

    # --- commands ---------------------------------------------------------------------

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout_s: float | None = None,
        on_output: Callable[[str], None] | None = None,
        check: bool = True,
        stdin: bytes | None = None,
    ) -> CommandResult:
        """Run a command in the directory to completion, its combined output streamed by line."""
        cmd = quote_command(command)
        lines = _Lines(on_output)
        started = time.monotonic()
        env = {**self.target.env, "HOME": self.home}
        try:
            with self._context.cd(self.home):
                result = self._context.run(
                    f"sh -c {shlex.quote(cmd)} 2>&1",
                    hide=True,
                    warn=True,
                    pty=False,
                    timeout=timeout_s,
                    out_stream=lines,
                    err_stream=lines,
                    env=env,
                    in_stream=io.StringIO(stdin.decode("utf-8", "replace")) if stdin is not None else False,
                )
        except CommandTimedOut as exc:
            raise RemoteCommandFailed(
                f"command timed out after {timeout_s:g} s on {self.target.where}: {cmd[:120]}",
                command=cmd,
                exit_status=None,
                output_tail=lines.finish()[-2000:],
            ) from exc
        output = lines.finish()
        status = int(result.exited) if result is not None else -1
        if check and status != 0:
            raise RemoteCommandFailed(
                f"command exited {status} on {self.target.where}: {cmd[:120]}",
                command=cmd,
                exit_status=status,
                output_tail=output[-2000:],
            )
        return CommandResult(cmd, status, output, time.monotonic() - started)

    @contextlib.contextmanager
    def upload_stream(self, command: str, *, use_openssh: bool | None = None) -> Iterator[BinaryIO]:
        """A writable stream into ``command``'s stdin, run in the directory; waits for it on exit."""
        # Unbuffered: the sync writes headers through the pipe object and file bodies with
        # sendfile(2) on its descriptor, and the two must reach the command in order.
        proc = subprocess.Popen(
            ["sh", "-c", command],
            cwd=self.home,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.target.env},
            bufsize=0,
        )
        assert proc.stdin is not None and proc.stdout is not None
        broken = False
        try:
            yield proc.stdin  # type: ignore[misc]
            proc.stdin.close()
        except BrokenPipeError:
            broken = True  # the far side ended early; its exit status says why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        output = proc.stdout.read().decode("utf-8", "replace")
        self._check(command, proc.wait(), output)
        if broken:
            raise RemoteCommandFailed(
                f"{command[:120]} on {self.target.where} stopped reading its input",
                command=command,
                output_tail=output[-2000:],
            )

    @contextlib.contextmanager
    def download_stream(self, command: str, *, use_openssh: bool | None = None) -> Iterator[BinaryIO]:
        """A readable stream of ``command``'s stdout, run in the directory; waits for it on exit."""
        proc = subprocess.Popen(
            ["sh", "-c", command],
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **self.target.env},
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            yield proc.stdout  # type: ignore[misc]
            proc.stdout.read()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        self._check(command, proc.wait(), proc.stderr.read().decode("utf-8", "replace"))

    def _check(self, command: str, status: int, output: str) -> None:
        if status != 0:
            raise RemoteCommandFailed(
                f"command exited {status} on {self.target.where}: {command[:120]}",
                command=command,
                exit_status=status,
                output_tail=output[-2000:],
            )

    # --- tails and files ----------------------------------------------------------------

    def tail(
        self, path: str, offset: int = 0, *, max_bytes: int = 1 << 20, whole_lines: bool = True
    ) -> tuple[bytes, int]:
        """Bytes of a file from ``offset`` and the offset to ask for next time (whole lines only)."""
        try:
            with open(self._path(path), "rb") as fh:
                fh.seek(offset)
                data = fh.read(max_bytes)
        except FileNotFoundError:
            return b"", offset
        if whole_lines:
            cut = data.rfind(b"\n") + 1
            if cut or len(data) < max_bytes:
                data = data[:cut]
        return data, offset + len(data)

    def exists(self, path: str) -> bool:
        return self._path(path).exists()

    def put(self, local: Path | str, remote: str) -> None:
        target = self._path(remote)
        tmp = target.with_name(f"{target.name}.rc-tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp.write_bytes(Path(local).read_bytes())
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RemoteCommandFailed(
                f"cannot put {local} at {remote} on {self.target.where}: {exc}", command=f"put {remote}"
            ) from exc

    def get(self, remote: str, local: Path | str) -> None:
        source, local = self._path(remote), Path(local)
        tmp = local.with_name(f".{local.name}.rc-tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp.write_bytes(source.read_bytes())
            os.replace(tmp, local)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RemoteCommandFailed(
                f"cannot get {remote} from {self.target.where}: {exc}", command=f"get {remote}"
            ) from exc

    def read_text(self, remote: str) -> str | None:
        try:
            return self._path(remote).read_text("utf-8")
        except FileNotFoundError:
            return None

    def write_text(self, remote: str, text: str, *, mode: int = 0o644) -> None:
        target = self._path(remote)
        tmp = target.with_name(f"{target.name}.rc-tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp.write_text(text, "utf-8")
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RemoteCommandFailed(
                f"cannot write {remote} on {self.target.where}: {exc}", command=f"write {remote}"
            ) from exc
