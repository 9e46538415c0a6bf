"""`console tui`: the Textual operator console (also what bare `console` opens on a terminal).

The first frame comes before anything heavy: plain ``console tui`` hands the app an opener
that loads settings and the state store once the screen is up. ``--attach`` and
``--checklist`` check their argument first, so bad input is refused in one line before any
screen opens. ``--screenshot PATH`` renders the screen once, headless, as an SVG and exits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from console.app import App, common_options, pass_app
from console.errors import StateError, UsageError

if TYPE_CHECKING:
    from console.settings import Settings
    from console.state import StateStore

SCREENSHOT_SIZE = (160, 45)
"""Columns and rows of ``--screenshot`` unless ``--size`` says otherwise."""


def resolve_run(app: App, attach: str | None, checklist: str | None) -> str | None:
    """The run to open: the one attached to, the checklist's unfinished run (or a new one), or the newest."""
    if attach and checklist:
        raise UsageError("--attach and --checklist do not go together", hint="attach to a run, or open a checklist")
    if attach:
        if app.store.get_run(attach) is None:
            raise StateError(f"no run {attach!r}", hint="see `console runs`")
        return attach
    if checklist:
        from console.checklist.engine import Engine
        from console.checklist.lock import StartLock
        from console.settings_shown import operator_limits
        from console.steps import load_checklist

        spec = load_checklist(checklist, profile=app.settings.profile, limits=operator_limits(app.loaded))
        engine = Engine(app.settings, app.store, resources=app.resources)
        with StartLock(app.settings.state_dir):  # one decision: two consoles never create two runs
            existing = engine.find_resumable(spec)
            return existing.id if existing is not None else engine.create_run(spec)
    newest = app.store.list_runs(1)
    return newest[0].id if newest else None


def parse_size(text: str) -> tuple[int, int]:
    """``COLSxROWS`` (e.g. ``160x45``) as a pair; a UsageError naming the form otherwise."""
    match = re.fullmatch(r"\s*(\d{2,4})\s*[xX]\s*(\d{2,4})\s*", text)
    if not match or not (40 <= int(match[1]) <= 1000 and 10 <= int(match[2]) <= 500):
        raise UsageError(f"--size {text!r} is not COLSxROWS", hint="for example --size 160x45 (40-1000 by 10-500)")
    return int(match[1]), int(match[2])


@click.command("tui")
@click.option("--attach", "attach", metavar="RUN_ID", help="Follow a run (started headless or elsewhere).")
@click.option(
    "--checklist", help="Open this checklist's unfinished run, or a new run of it (nothing starts until you ask)."
)
@click.option(
    "--screenshot",
    "screenshot",
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="Render the screen once, headless, save it as SVG at PATH and exit.",
)
@click.option("--size", "size", metavar="COLSxROWS", help="Screen size for --screenshot (default 160x45).")
@common_options
@pass_app
def tui_cmd(
    app: App,
    attach: str | None = None,
    checklist: str | None = None,
    screenshot: str | None = None,
    size: str | None = None,
) -> None:
    """The operator console: drive or follow a run, with GPU, cost and log panes."""
    if size is not None and screenshot is None:
        raise UsageError("--size goes with --screenshot", hint="add --screenshot PATH, or drop --size")
    screen_size = parse_size(size) if size is not None else SCREENSHOT_SIZE
    from console.tui.app import OperatorApp  # Textual loads only when the console opens

    options: dict[str, Any] = {"config": app.config}
    if screenshot is not None:
        from console.tui.shot import READING_EVERY_S

        options["reading_every_s"] = READING_EVERY_S
    if attach or checklist:
        run_id = resolve_run(app, attach, checklist)  # refuse bad input before any screen
        tui = OperatorApp(app.settings, app.store, run_id=run_id, resources=app.resources, **options)
    else:

        def open_newest() -> tuple[Settings, StateStore, str | None]:
            run_id = resolve_run(app, None, None)
            tui.resources = app.resources
            return app.settings, app.store, run_id

        tui = OperatorApp.opening(open_newest, **options)
    if screenshot is not None:
        from console.tui.shot import save_screenshot

        click.echo(f"saved {save_screenshot(tui, Path(screenshot), screen_size)}")
    else:
        tui.run()
    if tui.open_error is not None:
        raise tui.open_error


def register(cli: click.Group) -> None:
    cli.add_command(tui_cmd)
