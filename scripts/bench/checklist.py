"""Time the whole sandbox retrain checklist, end to end, with a per-step breakdown.

    .venv/bin/python scripts/bench/checklist.py [--symbols BTC-USD,ETH-USD,SOL-USD] [--keep]

Runs `console run --checklist retrain --new --json` on the sandbox profile in a fresh
state directory (the sandbox daemon's start included), reads the step transitions from
the JSON events, and prints each step's wall time, the total, and the orchestration
cost: everything outside fetching, feature building and training. The alignment and dry-run
steps fetch fresh candles and build runtime features too; they record those seconds in
their outputs (``fetch_s``, ``features_s``), which count as fetching and feature building.

Targets (issue 9): at most 3 minutes end to end on a 2-core machine, at most 15 s of
orchestration.
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

WORK_STEPS = ("fetch", "features", "train")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="BTC-USD,ETH-USD,SOL-USD")
    parser.add_argument("--keep", action="store_true", help="keep the state dir (and leave the sandbox up)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="rc-bench-checklist-"))
    env = {**os.environ, "RC_STATE_DIR": str(state), "RC_PROFILE": "sandbox"}
    console = [sys.executable, "-m", "console"]
    started = time.monotonic()
    proc = subprocess.run([*console, "run", "--checklist", "retrain", "--new", "--json", "--symbols", args.symbols],
                          env=env, capture_output=True, text=True)
    total = time.monotonic() - started
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

    began: dict[str, float] = {}
    took: dict[str, float] = {}
    states: dict[str, str] = {}
    for e in events:
        step, kind = e.get("step"), e["kind"]
        if not step or not kind.startswith("step."):
            continue
        if kind == "step.running":
            began[step] = e["ts"]
        elif step in began:
            took[step] = took.get(step, 0.0) + e["ts"] - began.pop(step)
            states[step] = kind.removeprefix("step.")

    work = sum(took.get(s, 0.0) for s in WORK_STEPS)
    inside = _work_inside_checks(state, [e["run_id"] for e in events if e.get("run_id")][-1:])
    work += sum(inside.values())
    print(f"{'step':<14} {'state':<10} {'seconds':>8}")
    for step, seconds in took.items():
        print(f"{step:<14} {states[step]:<10} {seconds:8.1f}")
    print(f"{'total':<25} {total:8.1f}  (target <= 180 s; exit {proc.returncode})")
    for step_kind, seconds in inside.items():
        print(f"  {step_kind:<23} {seconds:8.1f}  (inside a check step)")
    print(f"{'fetch+features+train':<25} {work:8.1f}")
    print(f"{'orchestration':<25} {total - work:8.1f}  (target <= 15 s: everything else, sandbox start included)")
    if proc.returncode:
        print("last stderr line:", (proc.stderr.strip().splitlines() or [""])[-1])
    if args.out:
        args.out.write_text(json.dumps({"total_s": total, "steps": took, "states": states, "work_s": work,
                                        "orchestration_s": total - work, "exit": proc.returncode}, indent=2))
    if not args.keep:
        subprocess.run([*console, "sandbox", "down"], env=env, capture_output=True)
        subprocess.run([*console, "watchdog", "stop"], env=env, capture_output=True)
    return 0


def _work_inside_checks(state: Path, run_ids: list[str]) -> dict[str, float]:
    """``{"dryrun fetch": s, ...}``: fetching and feature building the check steps recorded."""
    if not run_ids:
        return {}
    from console.state import StateStore

    out = {}
    for step in StateStore(state).steps(run_ids[0]):
        for kind in ("fetch", "features"):
            # A check whose gate failed keeps its figures in its details instead of its outputs.
            seconds = float(step.outputs.get(f"{kind}_s") or step.details.get(f"{kind}_s") or 0.0)
            if step.name not in WORK_STEPS and seconds:
                out[f"{step.name} {kind}"] = seconds
    return out


if __name__ == "__main__":
    sys.exit(main())
