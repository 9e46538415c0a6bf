"""General-purpose steps an operator can put in any checklist: run a local command, wait.

`command` runs an argv list (never through a shell) in the run directory under a watcher
(`console.command_watch`) that records its exit status, streams its output into the step
log, and is killed (its whole process group) when the step times out or is cancelled.
A killed console never makes it run twice: see `Command`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from console.checklist.step import Step, StepContext, StepParams, StepResult, StepState, register


class CommandParams(StepParams):
    argv: list[str] = Field(min_length=1)
    """The program and its arguments; no shell is involved."""
    idempotent: bool = False
    """Running it again is harmless: a command whose outcome was lost (its console and its
    watcher both killed) is then simply run again instead of refused."""


WATCHER = Path(__file__).resolve().parent.parent / "command_watch.py"


@dataclass(frozen=True)
class _Files:
    """Where a command step keeps its process record, its exit status and its output."""

    record: Path
    status: Path
    output: Path

    @classmethod
    def of(cls, ctx: StepContext) -> "_Files":
        base = Path(ctx.run_dir) / f".command-{ctx.step_name}"
        return cls(base.with_suffix(".json"), base.with_suffix(".exit"), base.with_suffix(".out"))

    def read(self, path: Path) -> dict[str, Any] | None:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def write_record(self, doc: dict[str, Any]) -> None:
        tmp = self.record.with_name(f".{self.record.name}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.record)


def _watcher_alive(pid: int, status: Path) -> bool:
    """True when ``pid`` is still this step's watcher (not a reused pid)."""
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return str(status).encode() in cmdline and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@register
class Command(Step):
    """Runs an argv list under a watcher that records its process group and exit status, so
    a console killed mid-command never runs it twice behind the operator's back: on resume
    it waits for (adopts) a command still running, reads the exit status of one that
    finished meanwhile, and runs it again only when it never started, or when its outcome
    was lost and the checklist marks it ``idempotent``; otherwise the step is BLOCKED."""

    name = "command"
    Params = CommandParams

    def plan(self, ctx: StepContext) -> str:
        return "run " + " ".join(ctx.params.argv)

    def run(self, ctx: StepContext) -> StepResult:
        files = _Files.of(ctx)
        record = files.read(files.record)
        if record is not None and not record.get("reported"):
            pid = int(record.get("pid", 0))
            if files.read(files.status) is not None:
                ctx.log.info("the command started by attempt %s (pid %s) finished meanwhile: not run again",
                             record.get("attempt"), pid)  # fmt: skip
                return self._finish(ctx, files, record)
            if _watcher_alive(pid, files.status):
                ctx.log.info("the command started by attempt %s is still running (pid %s): waiting for it",
                             record.get("attempt"), pid)  # fmt: skip
                return self._follow(ctx, files, record, None, files.output.stat().st_size)
            if not ctx.params.idempotent:
                return StepResult(
                    StepState.BLOCKED,
                    f"{ctx.params.argv[0]} was started (pid {pid}) and its outcome is lost (its watcher was killed): "
                    f"not run again; check what it did, then delete {files.record} (or mark the step idempotent)",
                )
            ctx.log.info("the outcome of pid %s is lost; the step is idempotent: running it again", pid)
        for stale in (files.status, files.output):
            stale.unlink(missing_ok=True)
        try:
            proc = subprocess.Popen(
                [sys.executable, str(WATCHER), str(files.status), str(files.output), "--", *ctx.params.argv],
                cwd=ctx.run_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            return StepResult.failed(f"cannot run {ctx.params.argv[0]!r}: {exc.strerror}")
        record = {"pid": proc.pid, "pgid": proc.pid, "argv": ctx.params.argv, "attempt": ctx.attempt,
                  "started_at": time.time(), "reported": False}  # fmt: skip
        files.write_record(record)
        return self._follow(ctx, files, record, proc, 0)

    def _follow(
        self, ctx: StepContext, files: _Files, record: dict[str, Any], proc: subprocess.Popen[bytes] | None, at: int
    ) -> StepResult:
        """Copy the command's output into the step log until its watcher writes the exit status."""
        pid = int(record["pid"])
        while files.read(files.status) is None:
            at = self._pump(ctx, files, at)
            if ctx.cancelled.is_set():
                with contextlib.suppress(OSError):
                    os.killpg(int(record.get("pgid", pid)), signal.SIGKILL)
                if proc is not None:
                    proc.wait()
                files.write_record({**record, "reported": True, "cancelled": True})
                ctx.check_cancelled()
            gone = proc.poll() is not None if proc is not None else not _watcher_alive(pid, files.status)
            if gone and files.read(files.status) is None:
                files.write_record({**record, "reported": True, "lost": True})
                return StepResult.failed(f"the watcher of {ctx.params.argv[0]} (pid {pid}) died without an exit status")
            time.sleep(0.05)
        self._pump(ctx, files, at)
        if proc is not None:
            proc.wait()
        return self._finish(ctx, files, record)

    @staticmethod
    def _pump(ctx: StepContext, files: _Files, at: int) -> int:
        try:
            with open(files.output, "rb") as fh:
                fh.seek(at)
                chunk = fh.read()
        except OSError:
            return at
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].decode(errors="replace").splitlines():
            ctx.log.info("%s", line)
        return at + end

    def _finish(self, ctx: StepContext, files: _Files, record: dict[str, Any]) -> StepResult:
        status = files.read(files.status) or {}
        files.write_record({**record, "reported": True, "exit": status.get("exit")})
        code = status.get("exit")
        if status.get("error"):
            return StepResult.failed(f"cannot run {ctx.params.argv[0]!r}: {status['error']}")
        if code != 0:
            return StepResult.failed(f"{ctx.params.argv[0]} exited with {code}")
        return StepResult.ok(f"{ctx.params.argv[0]} exited 0")


class WaitParams(StepParams):
    seconds: float = Field(gt=0, le=86_400)


@register
class Wait(Step):
    name = "wait"
    Params = WaitParams

    def plan(self, ctx: StepContext) -> str:
        return f"wait {ctx.params.seconds:g}s"

    def run(self, ctx: StepContext) -> StepResult:
        if ctx.cancelled.wait(ctx.params.seconds):
            ctx.check_cancelled()
        return StepResult.ok(f"waited {ctx.params.seconds:g}s")
