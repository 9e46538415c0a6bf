"""Detached jobs on a host: started so they outlive the connection, read back from any new one.

A job runs under ``setsid nohup`` with its log, pid and exit code kept in files under
``<jobs dir>/<job name>/`` on the host (``cmd.sh``, ``pid``, ``log``, ``exit``), so a new
connection can ask how it is doing and resume its log from a byte offset with no line lost
or repeated. Everything is shell run through the runner and files read through it, so the
same code serves the SSH runner and the local runner (`remote.runner.Runner`).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence

from remote.errors import ConnectionLost, RemotePathRefused
from remote.runner import (
    CommandResult,
    FollowResult,
    JobState,
    JobStatus,
    check_job_name,
    check_remote_path,
    quote_command,
)


class DetachedJobs:
    """Detached jobs for a runner that provides `run`, `tail`, `write_text`, `exists`, `home`,
    `reconnect`, a ``sleep`` and ``target.jobs_dir``."""

    jobs_dir: str
    """Where jobs keep their files: relative to the login directory, or absolute."""
    _sleep: Callable[[float], None]
    """How the runner waits (the caller's: it may watch for cancellation or a lost host)."""

    # --- what the runner provides -----------------------------------------------------

    @property
    def home(self) -> str:
        raise NotImplementedError

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout_s: float | None = None,
        on_output: Callable[[str], None] | None = None,
        check: bool = True,
        stdin: bytes | None = None,
    ) -> CommandResult:
        raise NotImplementedError

    def tail(
        self, path: str, offset: int = 0, *, max_bytes: int = 1 << 20, whole_lines: bool = True
    ) -> tuple[bytes, int]:
        raise NotImplementedError

    def write_text(self, remote: str, text: str, *, mode: int = 0o644) -> None:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        raise NotImplementedError

    def reconnect(self, max_wait_s: float = 60.0) -> int:
        raise NotImplementedError

    # --- jobs -----------------------------------------------------------------------------

    def job_dir(self, job_name: str) -> str:
        """The absolute directory on the host that holds the job's pid, log and exit files."""
        base = self.jobs_dir.rstrip("/")
        if not base.startswith("/"):
            base = f"{self.home}/{base}"
        return f"{base}/{check_job_name(job_name)}"

    def job_log_path(self, job_name: str) -> str:
        """The job's combined stdout/stderr log on the host."""
        return self.job_dir(job_name) + "/log"

    def run_detached(
        self, command: str | Sequence[str], job_name: str, *, cwd: str | None = None, replace: bool = False
    ) -> JobStatus:
        """Start ``command`` on the host so it outlives this connection; return its status.

        Idempotent per job name: if a job of that name exists (running or finished) it
        is left alone and its status returned, unless ``replace`` (which kills a running
        one first and starts afresh). ``cwd`` defaults to the login directory.
        """
        status = self.job_status(job_name)
        if status.state is not JobState.ABSENT:
            if not replace:
                return status
            if status.state is JobState.RUNNING:
                self.cancel_job(job_name, "KILL")
        cmd = quote_command(command)
        d = self.job_dir(job_name)
        workdir = check_remote_path(cwd) if cwd else self.home
        self.run(["sh", "-c", 'rm -rf -- "$0" && mkdir -p -- "$0" && : > "$0/log"', d])
        self.write_text(d + "/cmd.sh", cmd + "\n")
        # $0 is the job dir. The exit code goes through a temp name so a reader never
        # sees half of it; pid likewise. A cancelled job (TERM/INT) records 143/130.
        wrapper = (
            'echo $$ > "$0/pid.tmp" && mv "$0/pid.tmp" "$0/pid"; '
            'trap \'echo 143 > "$0/exit.tmp"; mv "$0/exit.tmp" "$0/exit"; exit 143\' TERM; '
            'trap \'echo 130 > "$0/exit.tmp"; mv "$0/exit.tmp" "$0/exit"; exit 130\' INT; '
            'sh "$0/cmd.sh" >> "$0/log" 2>&1; '
            'echo $? > "$0/exit.tmp"; mv "$0/exit.tmp" "$0/exit"'
        )
        q_wrap, q_dir = shlex.quote(wrapper), shlex.quote(d)
        launch = (
            f"cd {shlex.quote(workdir)} || exit 1; "
            f"if command -v setsid >/dev/null 2>&1; then S=setsid; else S=; fi; "
            f"$S nohup sh -c {q_wrap} {q_dir} </dev/null >/dev/null 2>&1 & "
            f"i=0; while [ ! -s {q_dir}/pid ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done"
        )
        self.run(launch, timeout_s=30)
        return self.job_status(job_name)

    def job_status(self, job_name: str) -> JobStatus:
        """Read the job's state from its files on the host (works from any new connection)."""
        d = self.job_dir(job_name)
        script = (
            'd="$0"; [ -d "$d" ] || { echo absent; exit 0; }; '
            'pid=$(cat "$d/pid" 2>/dev/null); ex=$(cat "$d/exit" 2>/dev/null); '
            'size=$(wc -c < "$d/log" 2>/dev/null || echo 0); '
            'if [ -z "$ex" ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then state=running; '
            # Re-read: the job may have written its exit code between the two looks.
            'else ex=$(cat "$d/exit" 2>/dev/null); if [ -n "$ex" ]; then state=exited; else state=died; fi; fi; '
            'echo "$state ${ex:--} ${pid:--} $size"'
        )
        out = self.run(["sh", "-c", script, d], timeout_s=30).output.split()
        log = d + "/log"
        if not out or out[0] == "absent":
            return JobStatus(job_name, JobState.ABSENT, None, None, log, 0)
        state, ex, pid, size = out[0], out[1], out[2], out[3]
        return JobStatus(
            job_name,
            JobState(state),
            int(ex) if ex.lstrip("-").isdigit() else None,
            int(pid) if pid.isdigit() else None,
            log,
            int(size) if size.isdigit() else 0,
        )

    def cancel_job(self, job_name: str, signal: str = "TERM") -> JobStatus:
        """Signal the job's whole process group (it was started as its own session)."""
        if signal not in ("TERM", "INT", "KILL", "HUP"):
            raise RemotePathRefused(f"signal {signal!r} is refused: use TERM, INT, KILL or HUP")
        status = self.job_status(job_name)
        if status.state is JobState.RUNNING and status.pid:
            self.run(
                ["sh", "-c", 'kill -s "$0" -- "-$1" 2>/dev/null || kill -s "$0" "$1"', signal, str(status.pid)],
                check=False,
            )
            for _ in range(40):
                status = self.job_status(job_name)
                if status.finished:
                    break
                self._sleep(0.05)
        return status

    def follow_job(
        self,
        job_name: str,
        on_line: Callable[[str], None],
        *,
        offset: int = 0,
        poll_s: float = 0.05,
        status_every_s: float = 1.0,
        max_reconnect_wait_s: float = 120.0,
        on_reconnect: Callable[[int], None] | None = None,
    ) -> FollowResult:
        """Stream a detached job's log line by line until the job ends; survive drops.

        Starts at byte ``offset`` (0, or the ``offset`` of an earlier FollowResult); if
        the connection drops it reconnects with backoff and resumes from the last whole
        line delivered, so ``on_line`` sees every line exactly once.
        """
        log = self.job_log_path(job_name)
        reconnects = 0
        last_check = 0.0
        last_full = 0.0
        decoder_errors = "replace"
        while True:
            try:
                data, new_offset = self.tail(log, offset)
                if data:
                    for line in data.decode("utf-8", decoder_errors).split("\n")[:-1]:
                        on_line(line)
                    offset = new_offset
                    continue
                now = time.monotonic()
                if now - last_check >= status_every_s:
                    last_check = now
                    # A stat of the exit file is one SFTP round trip; the full status
                    # (a shell on the host) only when it exists, or now and then to
                    # notice a job that died without writing one.
                    status = None
                    if self.exists(self.job_dir(job_name) + "/exit") or now - last_full >= 10 * status_every_s:
                        last_full = now
                        status = self.job_status(job_name)
                    if status is not None and (status.finished or status.state is JobState.ABSENT):
                        # Drain what was written before it ended, the last line too.
                        while True:
                            data, new_offset = self.tail(log, offset, whole_lines=False)
                            if not data:
                                break
                            text = data.decode("utf-8", decoder_errors)
                            for line in (text[:-1] if text.endswith("\n") else text).split("\n"):
                                on_line(line)
                            offset = new_offset
                        return FollowResult(status, offset, reconnects)
                self._sleep(poll_s)
            except ConnectionLost:
                self.reconnect(max_reconnect_wait_s)
                reconnects += 1
                if on_reconnect is not None:
                    on_reconnect(reconnects)
