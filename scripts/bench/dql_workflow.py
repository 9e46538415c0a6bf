"""Benchmark `console dql full-workflow` with its defaults on the sandbox, on the structured
market and on the random walk, and print the agent's figures against its baselines.

    .venv/bin/python scripts/bench/dql_workflow.py [--agent-type custom] [--modes structured,random_walk]
    .venv/bin/python scripts/bench/dql_workflow.py --backend batch --agent-type custom,dqn --modes structured

For each market: a fresh state dir; `console run --checklist dql` (the sandbox's small run:
fetch a week of BTC-USD, build features, train, bring home) makes the data file; then
`console dql full-workflow` with its defaults on that file is timed (target <= 5 minutes
on 2 cores) and its evaluation read back. On the random walk the gate must fail.
``--backend batch`` times `console dql submit --backend batch` instead: every agent type of
``--agent-type`` (comma-separated) as one experiment of one array job on the sandbox's Batch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONSOLE = [sys.executable, "-m", "console"]


def run(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, float]:
    began = time.perf_counter()
    proc = subprocess.run([*CONSOLE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - began


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent-type", default="custom")
    p.add_argument("--modes", default="structured,random_walk")
    p.add_argument("--backend", choices=("ssh", "batch"), default="ssh")
    args = p.parse_args()
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RC_"))}
            env.update(HOME=str(root / "home"), RC_STATE_DIR=str(root / "state"), RC_WATCHDOG__AUTOSTART="false",
                       RC_SANDBOX__MARKET_MODE=mode, COLUMNS="200")  # fmt: skip
            try:
                code, out, _ = run(env, root, "run", "--checklist", "dql")
                if code:
                    print(f"{mode}: the dql checklist failed ({code}):\n{out[-2000:]}")
                    continue
                data = root / "state" / "data" / "features" / "BTC-USD.parquet"
                if args.backend == "batch":
                    batch(env, root, data, mode, args.agent_type.split(","))
                    continue
                code, out, seconds = run(env, root, "dql", "full-workflow", "--agent-type", args.agent_type,
                                         "--data-file", str(data), "--experiment-name", f"bench-{mode}")  # fmt: skip
                if code:
                    print(f"{mode}: full-workflow failed ({code}):\n{out[-2000:]}")
                    continue
                evaluation = json.loads((root / "results" / f"bench-{mode}" / "evaluation.json").read_text())
                verdict = [line for line in out.splitlines() if line.startswith("verdict")] or ["(see report)"]
                m = evaluation["metrics"]
                print(f"{mode}: full-workflow {seconds:.0f}s ({args.agent_type}, defaults); "
                      f"test part {evaluation['part']['samples']} decisions")  # fmt: skip
                for name, figs in [("agent", m), *evaluation["baselines"].items()]:
                    print(f"  {name:13s} total {figs['total_return']:+.2%}  sharpe {figs['sharpe']:+.2f}  "
                          f"max dd {figs['max_drawdown']:.2%}  turnover {figs['turnover']:.3f}  trades {figs['trades']:.0f}")  # fmt: skip
                print(f"  gate {verdict[0]}")
                for line in out.splitlines():
                    if line.startswith("  ") and (" - pass" in line or " - FAIL" in line):
                        print(f"   {line.strip()}")
            finally:
                run(env, root, "sandbox", "down")


def batch(env: dict[str, str], root: Path, data: Path, mode: str, agents: list[str]) -> None:
    flags = [f for a in agents for f in ("--agent-type", a)]
    code, out, seconds = run(env, root, "dql", "submit", "--backend", "batch", *flags, "--data-file", str(data),
                             "--experiment-name", f"bench-{mode}")  # fmt: skip
    print(f"{mode}: dql submit --backend batch, {len(agents)} experiment(s) as one job: {seconds:.0f}s (exit {code})")
    for line in out.splitlines():
        if "verdict" in line or "resumed" in line or line.startswith("console:"):
            print(f"  {line.strip()}")


if __name__ == "__main__":
    main()
