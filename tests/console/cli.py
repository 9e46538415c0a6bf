"""Drive the real `console` executable in a subprocess, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONSOLE = [sys.executable, "-m", "console"]


def console(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``console ARGS`` with the test's environment (plus ``env``); capture everything."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([*CONSOLE, *args], env=full_env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, input=input)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The command failed with ``code`` and exactly one line on stderr, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
