"""`console tui`: the Textual operator console (also what bare `console` opens on a terminal)."""

from __future__ import annotations

import click

from console.app import App, common_options, pass_app
from console.checklist.engine import Engine
from console.checklist.spec import load_checklist
from console.errors import StateError, UsageError


def resolve_run(app: App, attach: str | None, checklist: str | None) -> str | None:
    """The run to open: the one attached to, the checklist's unfinished run (or a new one), or the newest."""
    if attach and checklist:
        raise UsageError("--attach and --checklist do not go together", hint="attach to a run, or open a checklist")
    if attach:
        if app.store.get_run(attach) is None:
            raise StateError(f"no run {attach!r}", hint="see `console runs`")
        return attach
    if checklist:
        spec = load_checklist(checklist, profile=app.settings.profile)
        engine = Engine(app.settings, app.store)
        existing = engine.find_resumable(spec)
        return existing.id if existing is not None else engine.create_run(spec)
    newest = app.store.list_runs(1)
    return newest[0].id if newest else None


@click.command("tui")
@click.option("--attach", "attach", metavar="RUN_ID", help="Follow a run (started headless or elsewhere).")
@click.option("--checklist", help="Open this checklist's unfinished run, or a new run of it (nothing starts until you ask).")
@common_options
@pass_app
def tui_cmd(app: App, attach: str | None = None, checklist: str | None = None) -> None:
    """The operator console: drive or follow a run, with GPU, cost and log panes."""
    run_id = resolve_run(app, attach, checklist)
    from console.tui.app import OperatorApp  # Textual loads only when the console opens

    OperatorApp(app.settings, app.store, run_id=run_id, config=app.config).run()


def register(cli: click.Group) -> None:
    cli.add_command(tui_cmd)
