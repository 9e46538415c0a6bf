"""How the operator console opens: the first frame before anything heavy, then the run; and
`console tui --screenshot`, which renders the filled screen once as an SVG and exits.

The first-frame speed itself is measured by hand (scripts/bench/tui_bench.py); here the
tests check what makes it fast and cannot flake: what is imported before the first frame,
and that the screen shows the panes while settings and the store are still loading.
"""

from __future__ import annotations

import asyncio
import secrets
import string
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from console.checklist.engine import Engine, run_dir
from console.steps import load_checklist
from console.errors import ConfigError
from console.redact import register_secret
from console.settings import Settings
from console.state import StateStore
from console.tui.app import OperatorApp
from console.tui.readings import Reading
from console.tui.shot import shareable
from tests.console.cli import assert_one_line_error, console

CHECKLIST = """
[checklist]
name = "opening"
[[steps]]
name = "first-step"
step = "wait"
[steps.params]
seconds = 1
"""


def _run(tmp_path: Path) -> tuple[Settings, StateStore, str]:
    settings = Settings(state_dir=tmp_path / "state")
    store = StateStore.open(settings.state_dir)
    checklist = tmp_path / "opening.toml"
    checklist.write_text(CHECKLIST)
    return settings, store, Engine(settings, store).create_run(load_checklist(str(checklist)))


async def _until(pilot: Any, condition: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def test_nothing_heavy_is_imported_before_the_first_frame() -> None:
    # `console tui` imports these before Textual draws; pydantic (settings), the engine and
    # the steps load after the first frame, in a worker.
    code = (
        "import sys, console.cli, console.commands.tui, console.tui.app\n"
        "heavy = ('pydantic', 'console.settings', 'console.checklist.engine', 'console.checklist.step',\n"
        "         'psutil', 'pandas', 'numpy', 'torch', 'boto3', 'paramiko', 'asyncssh')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_the_panes_show_while_the_store_opens_then_the_run_fills_them(tmp_path: Path) -> None:
    settings, store, run_id = _run(tmp_path)
    release = threading.Event()

    def opener() -> tuple[Settings, StateStore, str | None]:
        release.wait(20)  # stands for a slow settings load
        return settings, store, run_id

    async def scenario() -> None:
        app = OperatorApp.opening(opener, readings=lambda: Reading("host", util_pct=5.0, mem_pct=6.0), poll_s=0.1)
        async with app.run_test(size=(120, 36)) as pilot:
            await _until(pilot, lambda: app.main_up, "the panes")
            assert not app.opened
            assert "opening the state store" in str(app.query_one("#header").render())
            assert app.check_action("run_all", ()) is None  # greyed out while opening
            await pilot.press("o")  # the run picker needs the store: refused, with the reason
            assert any("opening the state store" in n.message for n in app._notifications)
            release.set()
            await _until(pilot, lambda: app.ready and app.spec is not None, "the run")
            assert app.run_id == run_id
            assert run_id in str(app.query_one("#header").render())
            assert app.check_action("run_all", ()) is True

    asyncio.run(scenario())


def test_an_opener_error_ends_the_console_and_is_kept_for_the_command(tmp_path: Path) -> None:
    def opener() -> tuple[Settings, StateStore, str | None]:
        raise ConfigError("console.toml: TOML syntax error", hint="fix the file")

    async def scenario() -> OperatorApp:
        app = OperatorApp.opening(opener, readings=None)
        async with app.run_test(size=(120, 36)) as pilot:
            await _until(pilot, lambda: app.open_error is not None, "the error")
        return app

    app = asyncio.run(scenario())
    assert isinstance(app.open_error, ConfigError)
    assert app.return_code == 1


def test_screenshot_saves_the_filled_screen_as_svg_without_secrets_or_home(tmp_path: Path) -> None:
    settings, store, run_id = _run(tmp_path)
    home = Path.home()  # the test's own HOME (tests/conftest.py)
    key = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    log = run_dir(settings, run_id) / "01-first-step.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"reading {home}/models/latest.json\nleaked {key} here\n")
    out = tmp_path / "shots" / "tui.svg"

    proc = console("tui", "--screenshot", str(out), "--size", "140x40", "--state-dir", str(settings.state_dir))

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"saved {out}"
    svg = out.read_text()
    assert svg.startswith("<svg")
    for shown in ("Checklist", run_id, "first-step", "~/models/latest.json", "leaked"):
        assert shown in svg, shown
    assert key not in svg
    assert str(home) not in svg
    assert [p.name for p in out.parent.iterdir()] == ["tui.svg"]  # no temporary file left behind


def test_screenshot_refuses_a_bad_config_in_one_line_and_saves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "console.toml"
    bad.write_text("profile = [\n")
    out = tmp_path / "tui.svg"

    proc = console("tui", "--screenshot", str(out), "--config", str(bad), "--state-dir", str(tmp_path / "state"))

    assert_one_line_error(proc, 2, "TOML syntax error")
    assert not out.exists()


def test_size_is_refused_in_one_line_when_malformed_or_without_screenshot(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    assert_one_line_error(console("tui", "--screenshot", str(tmp_path / "a.svg"), "--size", "wide", "--state-dir", state),
                          2, "--size 'wide' is not COLSxROWS")
    assert_one_line_error(console("tui", "--size", "160x45", "--state-dir", state), 2, "--size goes with --screenshot")


def test_a_shared_screenshot_masks_registered_secrets_and_writes_home_as_tilde() -> None:
    token = "tg-" + secrets.token_hex(12)
    register_secret(token)
    svg = f"<text>{token}</text><text>/home/op/runs&#160;/home/operator</text>"

    assert shareable(svg, home=Path("/home/op")) == "<text>***</text><text>~/runs&#160;/home/operator</text>"
