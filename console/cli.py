"""The `console` command line: one group, subcommands from `console.commands`, one error handler.

Exit codes (documented in the README):
0 success, 1 a step failed, 2 bad input or usage, 3 a guard refused,
4 a gate failed, 130 interrupted.

`main` is the only place on the CLI where an exception becomes output: a one-line
message on stderr and the exit code; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback

import click

from console.app import App, common_options
from console.errors import EXIT_INTERRUPTED, EXIT_USAGE, exit_code_for, is_ours
from console.redact import redact

# Which module defines each command. A module exposes `register(group)`; it is imported
# only when one of its commands is used, so `console run` never pays for the TUI's imports.
COMMANDS: dict[str, str] = {
    "run": "run",
    "resume": "run",
    "status": "run",
    "runs": "run",
    "plan": "run",
    "config": "config",
    "data": "data",
    "features": "features",
    "sandbox": "sandbox",
    "instance": "instance",
    "sync": "remote",
    "exec": "remote",
    "models": "remote",
    "check": "check",
    "dryrun": "dryrun",
    "gate": "gate",
    "live": "gate",
    "watchdog": "watchdog",
    "cost": "cost",
    "train": "train",
    "infra": "infra",
    "dql": "dql",
    "image": "image",
    "tui": "tui",
    "report": "report",
    "schedule": "schedule",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, module in COMMANDS.items() if _module_exists(module))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None or not _module_exists(module_name):
            return None
        module = importlib.import_module(f"console.commands.{module_name}")
        holder = click.Group()
        module.register(holder)
        return holder.commands.get(cmd_name)


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"console.commands.{name}") is not None


@click.group(cls=LazyGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@common_options
@click.pass_context
def cli(ctx: click.Context, config: str | None, profile: str | None, state_dir: str | None, debug: bool) -> None:
    """retrain-console: retrain per-coin models on rented GPUs from one checklist."""
    ctx.obj = App(config=config, profile=profile, state_dir=state_dir, debug=debug)
    if ctx.invoked_subcommand is None:
        tui = cli.get_command(ctx, "tui")
        if tui is not None and sys.stdin.isatty() and sys.stdout.isatty():
            ctx.invoke(tui)
        else:
            click.echo(ctx.get_help())


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
