"""Schedules that run a checklist monthly (seed 001 retrains monthly): a systemd user timer, a cron
line, or a launchd agent on macOS.

What is written, for ``console schedule install --checklist investment --monthly``:

- **systemd** (Linux with ``systemctl``): ``retrain-console-investment.service`` (a oneshot running
  ``console run --checklist investment --new --yes``) and ``retrain-console-investment.timer``
  (``OnCalendar=*-*-01 03:00:00``, ``Persistent=true``: a month missed while the machine was off
  runs at the next boot) in ``~/.config/systemd/user``; then ``systemctl --user daemon-reload``
  and ``enable --now`` on the timer.
- **cron**: one line in the user's crontab, ``0 3 1 * * ... # retrain-console:investment``.
- **launchd** (macOS): ``~/Library/LaunchAgents/com.retrain-console.investment.plist`` with
  ``StartCalendarInterval`` day 1, 03:00; then ``launchctl load``.

Nothing secret is written: the job reads its keys (FRED_API_KEY, AWS credentials...) from
``~/.config/retrain-console/env`` (systemd's ``EnvironmentFile``, sourced by the cron line and
the launchd agent), which the operator keeps. ``target`` (``--target-dir``) puts the files, and
for cron a ``crontab`` file, in another folder and touches no scheduler: tests use a temporary
one and never the real user's systemd or crontab.
"""

from __future__ import annotations

import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from console.errors import ConsoleError, UsageError

KINDS = ("systemd", "cron", "launchd")
PREFIX = "retrain-console-"
MARKER = "# retrain-console:"
HOUR = 3
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ScheduleFailed(ConsoleError):
    """The scheduler refused what was written (exit 1)."""


@dataclass(frozen=True)
class Planned:
    """One file (or crontab line) a schedule writes, and what to run after."""

    path: Path
    text: str
    after: tuple[tuple[str, ...], ...] = ()
    """Commands that activate it (skipped with a target folder)."""


def default_kind() -> str:
    if platform.system() == "Darwin":
        return "launchd"
    return "systemd" if shutil.which("systemctl") else "cron"


def check_name(checklist: str) -> str:
    if not _NAME.match(checklist):
        raise UsageError(f"checklist {checklist!r} is not a shipped checklist name", hint="e.g. investment")
    return checklist


def env_file() -> Path:
    return Path.home() / ".config" / "retrain-console" / "env"


def command(checklist: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "console", "run", "--checklist", checklist, "--new", "--yes", *extra]


def _systemd_dir(target: Path | None) -> Path:
    return target or Path.home() / ".config" / "systemd" / "user"


def plan(kind: str, checklist: str, extra: list[str], target: Path | None) -> list[Planned]:
    """What installing writes (nothing is touched)."""
    check_name(checklist)
    argv = command(checklist, extra)
    name = f"{PREFIX}{checklist}"
    if kind == "systemd":
        folder = _systemd_dir(target)
        service = (
            f"[Unit]\nDescription=retrain-console: the {checklist} checklist (monthly)\n\n"
            f"[Service]\nType=oneshot\nEnvironmentFile=-{env_file()}\nWorkingDirectory={Path.home()}\n"
            f"ExecStart={' '.join(shlex.quote(a) for a in argv)}\n"
        )
        timer = (
            f"[Unit]\nDescription=retrain-console: the {checklist} checklist, on the 1st of each month\n\n"
            f"[Timer]\nOnCalendar=*-*-01 {HOUR:02d}:00:00\nPersistent=true\nUnit={name}.service\n\n"
            "[Install]\nWantedBy=timers.target\n"
        )
        activate = (
            ("systemctl", "--user", "daemon-reload"),
            ("systemctl", "--user", "enable", "--now", f"{name}.timer"),
        )
        return [Planned(folder / f"{name}.service", service), Planned(folder / f"{name}.timer", timer, activate)]
    if kind == "cron":
        line = (
            f"0 {HOUR} 1 * * [ -f {shlex.quote(str(env_file()))} ] && . {shlex.quote(str(env_file()))}; "
            f"{' '.join(shlex.quote(a) for a in argv)} >/dev/null 2>&1 {MARKER}{checklist}"
        )
        return [Planned(target / "crontab" if target else Path("(the user crontab)"), line)]
    if kind == "launchd":
        folder = target or Path.home() / "Library" / "LaunchAgents"
        label = f"com.retrain-console.{checklist}"
        shell = f"[ -f {shlex.quote(str(env_file()))} ] && . {shlex.quote(str(env_file()))}; " + " ".join(
            shlex.quote(a) for a in argv
        )
        plist = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
            '<plist version="1.0">\n<dict>\n'
            f"  <key>Label</key><string>{label}</string>\n"
            "  <key>ProgramArguments</key>\n  <array><string>/bin/sh</string><string>-c</string>"
            f"<string>{_xml(shell)}</string></array>\n"
            f"  <key>StartCalendarInterval</key>\n  <dict><key>Day</key><integer>1</integer>"
            f"<key>Hour</key><integer>{HOUR}</integer><key>Minute</key><integer>0</integer></dict>\n"
            "</dict>\n</plist>\n"
        )
        path = folder / f"{label}.plist"
        return [Planned(path, plist, (("launchctl", "load", "-w", str(path)),))]
    raise UsageError(f"unknown schedule kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _crontab(target: Path | None) -> list[str]:
    if target is not None:
        path = target / "crontab"
        return path.read_text().splitlines() if path.is_file() else []
    found = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    return found.stdout.splitlines() if found.returncode == 0 else []


def _write_crontab(lines: list[str], target: Path | None) -> None:
    text = "".join(f"{line}\n" for line in lines)
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / ".crontab.tmp"
        tmp.write_text(text)
        tmp.replace(target / "crontab")
        return
    done = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True, check=False)
    if done.returncode:
        raise ScheduleFailed(f"crontab refused the new table: {(done.stderr or '').strip()[:200]}")


def install(kind: str, planned: list[Planned], target: Path | None) -> list[str]:
    """Write what `plan` showed; activate it unless ``target`` is given. The lines to report."""
    said = []
    if kind == "cron":
        checklist = planned[0].text.rsplit(MARKER, 1)[1]
        lines = [line for line in _crontab(target) if not line.endswith(f"{MARKER}{checklist}")]
        _write_crontab([*lines, planned[0].text], target)
        return [f"crontab line added ({'in ' + str(target / 'crontab') if target else 'the user crontab'})"]
    for item in planned:
        item.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = item.path.with_name(f".{item.path.name}.tmp")
        tmp.write_text(item.text)
        tmp.replace(item.path)
        said.append(f"wrote {item.path}")
        for argv in item.after:
            if target is not None:
                said.append(f"not run (--target-dir): {' '.join(argv)}")
                continue
            done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
            if done.returncode:
                raise ScheduleFailed(f"{' '.join(argv)} failed: {(done.stderr or '').strip()[:200]}")
            said.append(f"ran {' '.join(argv)}")
    return said


@dataclass(frozen=True)
class Installed:
    checklist: str
    kind: str
    where: str
    when: str


def installed(target: Path | None) -> list[Installed]:
    """Every retrain-console schedule found (systemd timers, launchd agents, crontab lines)."""
    found: list[Installed] = []
    for timer in sorted(_systemd_dir(target).glob(f"{PREFIX}*.timer")):
        when = next(
            (line.split("=", 1)[1] for line in timer.read_text().splitlines() if line.startswith("OnCalendar=")), ""
        )
        found.append(Installed(timer.stem[len(PREFIX) :], "systemd", str(timer), when))
    agents = target or Path.home() / "Library" / "LaunchAgents"
    for plist in sorted(agents.glob("com.retrain-console.*.plist")):
        found.append(Installed(plist.stem.split(".", 2)[2], "launchd", str(plist), f"day 1, {HOUR:02d}:00"))
    if target is not None or shutil.which("crontab"):
        for line in _crontab(target):
            if MARKER in line:
                found.append(Installed(line.rsplit(MARKER, 1)[1], "cron", "crontab", " ".join(line.split()[:5])))
    return found


def remove(checklist: str, target: Path | None) -> list[str]:
    """Remove the checklist's schedules of every kind; the lines to report (none: nothing was there)."""
    check_name(checklist)
    said = []
    name = f"{PREFIX}{checklist}"
    timer = _systemd_dir(target) / f"{name}.timer"
    if timer.exists():
        if target is None and shutil.which("systemctl"):
            subprocess.run(["systemctl", "--user", "disable", "--now", timer.name], capture_output=True, check=False)
        for path in (timer, timer.with_suffix(".service")):
            path.unlink(missing_ok=True)
            said.append(f"removed {path}")
    plist = (target or Path.home() / "Library" / "LaunchAgents") / f"com.retrain-console.{checklist}.plist"
    if plist.exists():
        if target is None and shutil.which("launchctl"):
            subprocess.run(["launchctl", "unload", "-w", str(plist)], capture_output=True, check=False)
        plist.unlink()
        said.append(f"removed {plist}")
    if target is not None or shutil.which("crontab"):
        lines = _crontab(target)
        kept = [line for line in lines if not line.endswith(f"{MARKER}{checklist}")]
        if len(kept) != len(lines):
            _write_crontab(kept, target)
            said.append("removed the crontab line")
    return said
