"""The README's main command on a fresh state dir: `console run --checklist retrain` (what
`make run` runs) ends with an honest gate pass and exit 0, any day, on any machine.

The sandbox's market starts at the same simulated moment whatever the date
(`remote.sandbox.market.MARKET_ANCHOR`), so this run judges the same history every time.
The smallest honest configuration: the shipped checklist and sandbox profile, one symbol
(ETH-USD, the one that once failed), through the real `console` executable, the sandbox
daemon (moto over HTTP, SSH hosts, the market simulator) and the real trainer. The random
walk's refusal is measured by `scripts/bench/sandbox_edge.py` and the honesty tests.

The run writes its report (`console report`); the page is opened in a real headless
browser (Chromium's headless shell, installed by scripts/install-system-deps.sh), which
must show the verdict and decode every embedded figure.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from remote.sandbox import lifecycle
from tests.e2e_support import CONSOLE, console_env

pytestmark = pytest.mark.slow

BROWSER = "chromium-headless-shell"
PROBE = (
    "<script>addEventListener('load', () => { document.body.dataset.images = "
    "[...document.images].map(i => i.naturalWidth + 'x' + i.naturalHeight).join(','); })</script>"
)


def rendered(page: Path) -> str:
    """The page's DOM after a real browser loaded it, with each image's decoded size noted on the body."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    browser = shutil.which(BROWSER)
    assert browser, f"{BROWSER} is missing: run scripts/install-system-deps.sh"
    proc = subprocess.run([browser, "--no-sandbox", "--disable-gpu", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-1000:]
    return proc.stdout


def test_a_fresh_retrain_run_on_the_sandbox_passes_the_gate_and_exits_0(tmp_path) -> None:
    state = tmp_path / "state"
    env = console_env(tmp_path / "home", state)
    try:
        proc = subprocess.run([*CONSOLE, "run", "--checklist", "retrain", "--symbols", "ETH-USD"], env=env,
                              capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                              cwd=str(tmp_path))  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "gate passed for ETH-USD" in proc.stdout
        record = json.loads((state / "data" / "models" / "gate.json").read_text())
        assert record["passed"] is True and record["reasons"] == [] and record["symbols"] == ["ETH-USD"]
        page = Path(re.search(r"(?m)^report: (.+\.html)$", proc.stdout)[1])  # type: ignore[index]
        assert page.parent == next((state / "runs").iterdir())
        names = {p.name for p in page.parent.glob("report-*.png")}
        assert names == {f"report-{n}.png" for n in ("steps", "training", "out-of-sample", "equity")}
        dom = rendered(page)
        assert "PASSED" in dom and "beats the last move baseline" in dom and "ETH-USD" in dom
        sizes = re.search(r'data-images="([^"]*)"', dom)[1].split(",")  # type: ignore[index]
        assert len(sizes) == 4 and all(int(s.split("x")[0]) > 300 for s in sizes), sizes
    finally:
        lifecycle.down(state)
