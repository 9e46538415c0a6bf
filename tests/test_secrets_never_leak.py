"""Secrets never leak: a sandbox retrain with real-shaped secrets in the environment leaves
no trace of any of them in any file under the state dir, the captured output, the events
table or the notifications.

The secrets are built at run time in the shapes the real services use: a CoinGecko key
("CG-..."), a Telegram bot token ("<digits>:AA...") with its chat id, and an AWS key pair
(the sandbox makes up its own moto credentials; ours must neither break the run nor be
written anywhere). The background watchdog runs too, relaying events to a local json://
receiver, so its files and its notifications are scanned as well.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from console.state import StateStore
from tests.console.cli import console

RETRAIN = Path(__file__).resolve().parents[1] / "console" / "checklist" / "checklists" / "retrain.toml"
QUICK_STEPS = ("fetch", "features", "verify-counts", "launch", "sync", "train", "upload", "terminate", "download")


def _made_up_secrets() -> dict[str, str]:
    """Every secret the console reads, built now in its real shape."""
    aws_alphabet = string.ascii_letters + string.digits + "+/"
    return {
        "COINGECKO_API_KEY": "CG-" + secrets.token_urlsafe(18),
        "TELEGRAM_BOT_TOKEN": f"{secrets.randbelow(9 * 10**8) + 10**8}:AA" + secrets.token_urlsafe(25)[:33],
        "AWS_ACCESS_KEY_ID": "AKIA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16)),
        "AWS_SECRET_ACCESS_KEY": "".join(secrets.choice(aws_alphabet) for _ in range(40)),
    }


def _needles(value: str) -> list[str]:
    """The secret, and its distinctive parts (a bot token's secret half leaks on its own too)."""
    out = [value]
    if ":" in value:
        out.append(value.split(":", 1)[1])
    if value.startswith("CG-"):
        out.append(value[3:])
    return out


def _quick_checklist(path: Path) -> Path:
    """retrain.toml for one symbol, three days, one epoch, fetch..download."""
    spec = tomllib.loads(RETRAIN.read_text())
    lines = ['[checklist]\nname = "retrain-secrets"\ndescription = "quick sandbox retrain with secrets set"\n',
             '[params]\nsymbols = ["ETH-USD"]\ndays = 3\nepochs = 1\n']
    for key, value in spec["params"].items():
        if key not in ("symbols", "days", "epochs", "iterations"):  # iterations: dryrun only
            lines.append(f"{key} = {json.dumps(value)}\n")
    lines.append("\n[defaults]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in spec["defaults"].items()))
    for step in spec["steps"]:
        if step["name"] in QUICK_STEPS:
            lines.append("\n[[steps]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in step.items()))
    path.write_text("".join(lines))
    return path


class _Receiver:
    """A local HTTP endpoint Apprise's json:// scheme posts notifications to."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[_Receiver]:
    rec = _Receiver()
    yield rec
    rec.close()


@pytest.fixture()
def state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    yield state
    env = {"RC_STATE_DIR": str(state)}
    console("watchdog", "stop", env=env, timeout=60)
    from remote.sandbox import lifecycle

    lifecycle.down(state)


def _every_file(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


def _events_text(state: Path) -> str:
    store = StateStore.open(state)
    try:
        rows = store.snapshot()
        events = store.events(limit=1_000_000)
    finally:
        store.close()
    return json.dumps(rows, default=str) + "\n" + "\n".join(f"{e}" for e in events)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_no_secret_appears_in_any_file_output_event_or_notification(tmp_path: Path, state_dir: Path,
                                                                    receiver: _Receiver) -> None:
    made_up = _made_up_secrets()
    env = {
        **made_up,
        "TELEGRAM_CHAT_ID": str(secrets.randbelow(10**9) + 10**9),
        "RC_STATE_DIR": str(state_dir),
        "RC_NOTIFY_URLS": json.dumps([receiver.url]),
        # The watchdog relays the run's events as notifications; it runs, so it is scanned.
        "RC_WATCHDOG__AUTOSTART": "true",
        "RC_WATCHDOG__INTERVAL_S": "1",
    }
    checklist = _quick_checklist(tmp_path / "retrain-secrets.toml")

    proc = console("run", "--checklist", str(checklist), env=env, timeout=540)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    status = console("status", env=env, timeout=60)
    assert status.returncode == 0, status.stderr

    # Give the watchdog a pass or two to relay the run's end, then stop it (flushes its files).
    relayed = console("watchdog", "once", env=env, timeout=120)
    console("watchdog", "stop", env=env, timeout=60)

    # Bring the sandbox down before scanning, so whatever it writes on the way out is scanned too.
    from remote.sandbox import lifecycle

    lifecycle.down(state_dir)

    store = StateStore.open(state_dir)
    try:
        runs = store.list_runs()
        assert runs and runs[0].status == "succeeded", runs
        assert len(store.steps(runs[0].id)) == len(QUICK_STEPS)
    finally:
        store.close()

    scanned: dict[str, bytes] = {}
    for path in _every_file(state_dir):
        scanned[str(path.relative_to(state_dir))] = path.read_bytes()
    assert any(name.startswith("runs") for name in scanned), sorted(scanned)
    assert "state.db" in scanned
    scanned["<stdout/stderr of run, status, watchdog once>"] = "\n".join(
        [proc.stdout, proc.stderr, status.stdout, status.stderr, relayed.stdout, relayed.stderr]).encode()
    scanned["<events and every state row>"] = _events_text(state_dir).encode()
    for i, body in enumerate(receiver.bodies):
        scanned[f"<notification {i}>"] = body

    assert receiver.bodies, "the watchdog relayed no notification (nothing was scanned there)"
    assert any(name.startswith("watchdog") for name in scanned), sorted(scanned)
    assert any(name.startswith("sandbox") for name in scanned), sorted(scanned)
    print("\n".join(sorted(scanned)))  # what was scanned, for -s
    leaks = []
    for secret_name, value in made_up.items():
        for needle in _needles(value):
            for where, blob in scanned.items():
                if needle.encode() in blob:
                    leaks.append(f"{secret_name} in {where}")
    assert not leaks, leaks
    # The secrets were read (and masked), not simply ignored.
    shown = console("config", "show", env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    for field in ("coingecko_api_key", "telegram_bot_token", "aws_secret_access_key"):
        (row,) = [line for line in shown.stdout.splitlines() if re.search(rf"\b{field}\b", line)]
        assert "(unset)" not in row and "env" in row, row
    assert not [v for v in made_up.values() if v in shown.stdout]
