"""The README's main command on a fresh state dir: `console run --checklist retrain` (what
`make run` runs) ends with an honest gate pass and exit 0, any day, on any machine.

The sandbox's market starts at the same simulated moment whatever the date
(`remote.sandbox.market.MARKET_ANCHOR`), so this run judges the same history every time.
The smallest honest configuration: the shipped checklist and sandbox profile, one symbol
(ETH-USD, the one that once failed), through the real `console` executable, the sandbox
daemon (moto over HTTP, SSH hosts, the market simulator) and the real trainer. The random
walk's refusal is measured by `scripts/bench/sandbox_edge.py` and the honesty tests.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from remote.sandbox import lifecycle
from tests.e2e_support import CONSOLE, console_env

pytestmark = pytest.mark.slow


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
    finally:
        lifecycle.down(state)
