"""General-purpose steps an operator can put in any checklist: run a local command, wait.

`command` runs an argv list (never through a shell) in the run directory, streams its
output into the step log, and is killed when the step times out or is cancelled.
"""

from __future__ import annotations

import subprocess
import threading
import time

from pydantic import Field

from console.checklist.step import Step, StepContext, StepParams, StepResult, register


class CommandParams(StepParams):
    argv: list[str] = Field(min_length=1)
    """The program and its arguments; no shell is involved."""


@register
class Command(Step):
    name = "command"
    Params = CommandParams

    def plan(self, ctx: StepContext) -> str:
        return "run " + " ".join(ctx.params.argv)

    def run(self, ctx: StepContext) -> StepResult:
        try:
            proc = subprocess.Popen(
                ctx.params.argv,
                cwd=ctx.run_dir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except OSError as exc:
            return StepResult.failed(f"cannot run {ctx.params.argv[0]!r}: {exc.strerror}")

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                ctx.log.info("%s", line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        while proc.poll() is None:
            if ctx.cancelled.is_set():
                proc.kill()
                proc.wait()
                reader.join(2)
                ctx.check_cancelled()
            time.sleep(0.05)
        reader.join(5)
        if proc.returncode != 0:
            return StepResult.failed(f"{ctx.params.argv[0]} exited with {proc.returncode}")
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
