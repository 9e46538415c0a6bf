"""`console tui --screenshot PATH`: the operator console rendered once, headless, as an SVG.

For the README and for bug reports: the screen is drawn exactly as an operator would see
it once the run's records, its checklist and a hardware reading are on it, then saved and
the console exits. A screenshot is made to be shared, so every known secret is masked
(`console.redact`) and the home directory is shown as ``~``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from console.errors import ConsoleError
from console.redact import redact
from console.tui.app import OperatorApp
from training.atomic import atomic_path

SETTLE_TIMEOUT_S = 60.0
"""How long the screen may take to fill in (the opener loads pydantic and every step first)."""

READINGS = 6
"""Hardware readings a screenshot waits for, so the sparklines show a history and not one sample."""

READING_EVERY_S = 0.5
"""How often `console tui --screenshot` takes them (real readings, taken faster than the usual 2 s)."""


def settled(app: OperatorApp, readings: int = 1) -> bool:
    """True once the screen shows the run (or that there is none), its checklist and ``readings`` readings."""
    if not app.ready:
        return False
    if app.run_id is not None and app.spec is None and not app._spec_error:
        return False
    return app.readings is None or app.readings_taken >= readings


def shareable(svg: str, home: Path | None = None) -> str:
    """``svg`` with known and secret-shaped values masked and the home directory written ``~``."""
    home_dir = str(home if home is not None else Path.home()).rstrip("/")
    text = redact(svg)
    if home_dir:
        text = re.sub(re.escape(home_dir) + r"(?=/|&#160;|\s|<|$)", "~", text)
    return text


def save_screenshot(
    app: OperatorApp,
    path: Path,
    size: tuple[int, int],
    *,
    readings: int = READINGS,
    timeout_s: float = SETTLE_TIMEOUT_S,
) -> Path:
    """Run ``app`` headless at ``size`` until it has settled (``readings`` hardware readings
    taken), save its screen as SVG at ``path``.

    Raises the app's open error when settings or the store could not be loaded, and a
    ConsoleError when the screen did not fill in within ``timeout_s``.
    """
    shots: list[str] = []

    async def capture(pilot: Any) -> None:
        deadline = time.monotonic() + timeout_s
        while not settled(app, readings) and app.open_error is None and time.monotonic() < deadline:
            await pilot.pause(0.05)
        if settled(app, readings):
            await pilot.pause(0.3)  # the first log batch and the training rows are drawn next
            await pilot.wait_for_scheduled_animations()
            shots.append(app.export_screenshot())
        app.exit()

    app.run(headless=True, size=size, auto_pilot=capture)
    if app.open_error is not None:
        raise app.open_error
    if not shots:
        raise ConsoleError(
            f"the screen did not fill in within {timeout_s:.0f} s; nothing saved",
            hint="try again, or open `console tui` to see what it waits for",
        )
    with atomic_path(path) as tmp:
        tmp.write_text(shareable(shots[0]), encoding="utf-8")
    return path
