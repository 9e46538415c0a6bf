"""The console's exception tree and the exit codes it maps to.

Every error the operator can see is one of these, raised with a one-line message that
says what was wrong and what to do. Exactly one place per front end turns them into
output (`console.cli.main` for the CLI, a notification in the TUI)::

    ConsoleError                 exit 1   base; also "a step failed"
     +-- UsageError              exit 2   bad input: flags, files, names, values
     |    +-- ConfigError        exit 2   config file, environment or profile is wrong
     |    +-- ChecklistError     exit 2   unknown checklist, TOML syntax, unknown step/param
     |    +-- StateError         exit 2   state dir unwritable, database corrupt or too new
     |    +-- RunLocked          exit 2   another process is driving this run
     +-- StepFailed              exit 1   a step ended FAILED after its retries
     +-- GuardRefused            exit 3   a guard refused to start something
     +-- GateFailed              exit 4   the pre-live gate has no valid pass
     +-- Interrupted             exit 130 the operator pressed Ctrl-C

Errors raised by `remote`, `training` and `runtime_checks` (which cannot import this
module) follow the same convention: a one-line ``str(exc)`` and an ``exit_code``
attribute; `exit_code_for` reads it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_USAGE = 2
EXIT_GUARD = 3
EXIT_GATE = 4
EXIT_INTERRUPTED = 130


class ConsoleError(Exception):
    """Base of every error the console reports; ``str()`` is the one-line message."""

    exit_code = EXIT_STEP_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        """What the operator can do about it, appended to the one-line message."""

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(ConsoleError):
    """Bad input: a flag, a file, a name or a value the console cannot use."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """The config file, the environment or the chosen profile is wrong."""


class ChecklistError(UsageError):
    """The checklist cannot be found or parsed, or names an unknown step or parameter."""


class StateError(UsageError):
    """The state directory or its database cannot be used as it is."""


class RunLocked(UsageError):
    """Another process holds the lock on this run."""


class StepFailed(ConsoleError):
    """A step ended FAILED (after its retries)."""

    exit_code = EXIT_STEP_FAILED


class GuardRefused(ConsoleError):
    """A guard refused to start something (a step's preflight, the local-training guard)."""

    exit_code = EXIT_GUARD


class GateFailed(ConsoleError):
    """The pre-live gate has no valid pass for these models."""

    exit_code = EXIT_GATE


class Interrupted(ConsoleError):
    """The operator interrupted the run (Ctrl-C)."""

    exit_code = EXIT_INTERRUPTED


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for any exception; 1 for ones we did not anticipate."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    code = getattr(exc, "exit_code", None)
    return code if isinstance(code, int) else EXIT_STEP_FAILED


def is_ours(exc: BaseException) -> bool:
    """True for errors raised on purpose by our packages (they carry ``exit_code``)."""
    return isinstance(exc, ConsoleError) or isinstance(getattr(exc, "exit_code", None), int)
