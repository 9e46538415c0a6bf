"""Wall time of `console data backfill --days N` and of the whole `investment` checklist on the
sandbox (issue 14's benchmarks; target: the checklist within 3 minutes on 2 cores).

    .venv/bin/python scripts/bench/investment_checklist.py [--days 365] [--epochs 15] [--mode structured|random_walk] [--seed 7]

Each run uses a fresh state directory (its own sandbox daemon, stopped at the end): the
backfill fills an empty data bucket over HTTP from the simulator; the checklist then reads
that window, trains both models on a sandbox instance, publishes behind the gate and dry-runs
the runtime. Prints one JSON line: seconds of each, the steps' own times, and the outcome.
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

STEPS = (
    "investment-data",
    "launch",
    "sync",
    "train",
    "upload",
    "terminate",
    "investment-publish",
    "investment-runtime",
)


def console(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "console", *args], env=env, capture_output=True, text=True)
    return time.perf_counter() - began, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--mode", choices=("structured", "random_walk"), default="structured")
    parser.add_argument("--seed", type=int, default=7, help="the sandbox market's seed (default 7, the sandbox's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rc-investment-bench-") as tmp:
        env = {**os.environ, "HOME": str(Path(tmp) / "home"), "RC_STATE_DIR": str(Path(tmp) / "state"),
               "RC_SANDBOX__MARKET_MODE": args.mode, "RC_SANDBOX__MARKET_SEED": str(args.seed),
               "RC_WATCHDOG__AUTOSTART": "false"}  # fmt: skip
        try:
            up_s, up = console(["sandbox", "up"], env)
            if up.returncode:
                print(up.stderr, file=sys.stderr)
                return 1
            fill_s, fill = console(["data", "backfill", "--days", str(args.days), "--json"], env)
            if fill.returncode:
                print(fill.stderr, file=sys.stderr)
                return 1
            run_s, run = console(
                ["run", "--checklist", "investment", "--max-days", str(args.days), "--epochs", str(args.epochs),
                 "--json"], env,
            )  # fmt: skip
            from console.state import StateStore

            store = StateStore.open(Path(tmp) / "state")
            run_id = store.list_runs(1)[0].id
            steps = {}
            for name in STEPS:
                step = store.get_step(run_id, name)
                if step is not None:
                    steps[name] = {"state": step.state, "summary": step.summary}
            print(json.dumps({
                "days": args.days, "epochs": args.epochs, "mode": args.mode, "seed": args.seed, "cores": os.cpu_count(),
                "load_avg": os.getloadavg()[0], "sandbox_up_s": round(up_s, 1),
                "backfill_s": round(fill_s, 1), "backfill": json.loads(fill.stdout.strip().splitlines()[-1]),
                "checklist_s": round(run_s, 1), "checklist_exit": run.returncode, "steps": steps,
            }))  # fmt: skip
        finally:
            console(["sandbox", "down"], env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
