"""`console schedule`: a monthly systemd timer, cron line or launchd agent, written only into a
temporary target folder here (never the real user's systemd or crontab)."""

from __future__ import annotations

from pathlib import Path

from console.schedule import install, installed, plan, remove
from tests.console.cli import console

EXTRA = ["--profile", "sandbox"]


def test_dry_run_shows_the_timer_and_the_service_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "units"
    shown = console("schedule", "install", "--checklist", "investment", "--monthly", "--kind", "systemd",
                    "--target-dir", str(target), "--dry-run", env={"RC_STATE_DIR": str(tmp_path / "state")})  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "OnCalendar=*-*-01 03:00:00" in shown.stdout and "run --checklist investment --new --yes" in shown.stdout
    assert "dry run: nothing written" in shown.stdout and not target.exists()


def test_install_list_and_remove_keep_other_crontab_lines_and_never_duplicate(tmp_path: Path) -> None:
    (tmp_path / "crontab").write_text("15 * * * * backup.sh\n")
    for _ in range(2):  # installing again replaces the line
        install("cron", plan("cron", "investment", EXTRA, tmp_path), tmp_path)
    install("systemd", plan("systemd", "investment", EXTRA, tmp_path), tmp_path)
    lines = (tmp_path / "crontab").read_text().splitlines()
    assert lines[0] == "15 * * * * backup.sh" and len(lines) == 2 and lines[1].startswith("0 3 1 * * ")
    assert "FRED_API_KEY" not in lines[1] and "--new --yes --profile sandbox" in lines[1]
    assert {(s.checklist, s.kind) for s in installed(tmp_path)} == {("investment", "cron"), ("investment", "systemd")}
    said = remove("investment", tmp_path)
    assert len(said) == 3 and installed(tmp_path) == []
    assert (tmp_path / "crontab").read_text() == "15 * * * * backup.sh\n"
    assert remove("investment", tmp_path) == []


def test_a_launchd_agent_runs_on_the_first_of_the_month(tmp_path: Path) -> None:
    (item,) = plan("launchd", "investment", EXTRA, tmp_path)
    assert item.path == tmp_path / "com.retrain-console.investment.plist"
    assert "<key>Day</key><integer>1</integer>" in item.text and "run --checklist investment" in item.text
