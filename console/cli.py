"""The `console` command line: one group, subcommands from `console.commands`, one error handler.

Exit codes (documented in the README):
0 success, 1 a step failed, 2 bad input or usage, 3 a guard refused,
4 a gate failed, 130 interrupted.

`main` is the only place on the CLI where an exception becomes output: a one-line
message on stderr and the exit code; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from console.app import App, common_options
from console.errors import EXIT_INTERRUPTED, EXIT_USAGE, exit_code_for, is_ours
from console.redact import redact

# Each module exposes `register(cli)`; a module that has not landed yet is absent.
COMMAND_MODULES = (
    "run", "config", "data", "features", "sandbox", "instance", "remote", "train",
    "check", "gate", "watchdog", "cost", "tui",
)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.pass_context
def cli(ctx: click.Context, config: str | None, profile: str | None, state_dir: str | None, debug: bool) -> None:
    """retrain-console: retrain per-coin models on rented GPUs from one checklist."""
    ctx.obj = App(config=config, profile=profile, state_dir=state_dir, debug=debug)
    if ctx.invoked_subcommand is None:
        tui = cli.commands.get("tui")
        if tui is not None and sys.stdin.isatty() and sys.stdout.isatty():
            ctx.invoke(tui)
        else:
            click.echo(ctx.get_help())


for _module in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"console.commands.{_module}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"console.commands.{_module}":
            raise
    else:
        _mod.register(cli)


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("RC_DEBUG") == "1"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn every error into one line and a documented exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    try:
        code = cli.main(args=args, prog_name="console", standalone_mode=False)
        # Without standalone mode click returns a command's requested exit code.
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("console: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        if debug:
            traceback.print_exc()
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see `{exc.ctx.command_path} --help`)"
        click.echo(f"console: error: {redact(exc.format_message())}{hint}", err=True)
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except KeyboardInterrupt:
        click.echo("console: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BaseException as exc:  # the one place an error becomes output
        if isinstance(exc, SystemExit):
            raise
        if debug:
            click.echo(redact("".join(traceback.format_exception(exc))), err=True)
        if is_ours(exc):
            click.echo(f"console: error: {redact(str(exc))}", err=True)
        else:
            first = (str(exc).strip().splitlines() or [""])[0]
            click.echo(
                f"console: internal error: {type(exc).__name__}: {redact(first)} (run again with --debug for the traceback)",
                err=True,
            )
        sys.exit(exit_code_for(exc))
