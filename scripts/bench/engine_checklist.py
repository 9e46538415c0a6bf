"""The engine end to end on the sandbox's Batch, as an operator runs it, the HTTP fetch included.

    .venv/bin/python scripts/bench/engine_checklist.py --coins 12 --days 14 --children 4 --running 2
    .venv/bin/python scripts/bench/engine_checklist.py --coins 400 --days 14 --children 8 --running 8  # target

Runs ``console run --checklist engine --backend batch --symbols top<N>`` in a fresh state
directory (the sandbox daemon's start included) with the shipped checklist's settings but
``days`` and ``children`` from the flags, ``--running`` children at once (the compute
environment's vCPUs on the sandbox). Each fetch child asks the simulator for its own coins'
candles from its own address (the simulator's 10 requests a second is per host, as
Coinbase's is per address), builds their feature files and sends back encoder moments;
the console fits the encoder; a second array job trains the heads.

Prints each step's wall time, the candle requests and how many hosts they came from, the
per-coin figures, the orchestration overhead per coin (wall time not spent in a child's
fetch, features or head, those divided by the children running at once) and the console
process's peak memory. Target (issue 15): 400 coins x 14 days <= 20 minutes on 2 cores.
Then a projection of 400 coins x 365 days on N children from the per-coin figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=12)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--running", type=int, default=2, help="children the sandbox runs at once")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the state dir (and leave the sandbox up)")
    args = parser.parse_args()

    import console as package

    state = Path(tempfile.mkdtemp(prefix="rc-bench-engine-"))
    shipped = (Path(package.__file__).parent / "checklist" / "checklists" / "engine.toml").read_text()
    checklist = state / "engine.toml"
    checklist.write_text(
        shipped.replace("days = 14", f"days = {args.days}").replace("children = 8", f"children = {args.children}")
    )
    env = {**os.environ, "RC_STATE_DIR": str(state), "RC_PROFILE": "sandbox",
           "RC_SANDBOX__BATCH_RUNNING": str(args.running), "HOME": str(state)}  # fmt: skip
    command = [sys.executable, "-m", "console"]
    run = [*command, "run", "--checklist", str(checklist), "--new", "--json", "--backend", "batch",
           "--symbols", f"top{args.coins}"]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(run, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    took = step_seconds(events)

    from console.state import StateStore

    run_id = next(e["run_id"] for e in events if e.get("run_id"))
    steps = {s.name: s for s in StateStore(state).steps(run_id)}
    data = steps["engine-data"].details if "engine-data" in steps else {}
    train = steps["engine-train"].details.get("coins", {}) if "engine-train" in steps else {}
    head_s = sum(float(c.get("seconds") or 0.0) for c in train.values())
    on_children = (float(data.get("child_seconds") or 0.0) + head_s) / max(1, args.running)
    figures = {
        "coins": args.coins,
        "days": args.days,
        "children": args.children,
        "running": args.running,
        "exit": proc.returncode,
        "wall_s": round(wall, 1),
        "steps_s": {k: round(v, 1) for k, v in took.items()},
        "candle_requests": data.get("candle_requests"),
        "hosts": data.get("hosts"),
        "skipped": len(data.get("skipped") or {}),
        "heads": len(train),
        "passed": sum(1 for c in train.values() if c.get("passed")),
        "fetch_and_features_per_coin_s": round(float(data.get("child_seconds") or 0.0) / max(1, args.coins), 3),
        "head_per_coin_s": round(head_s / max(1, len(train)), 3),
        "orchestration_per_coin_s": round((wall - on_children) / max(1, args.coins), 3),
        "console_peak_rss_mb": round(peak_mb, 1),
    }
    print(json.dumps(figures, indent=1))
    print(f"wall {wall / 60:.1f} min for {args.coins} coins x {args.days} days (target <= 20 min at 400)")
    if proc.returncode in (0, 4):  # figures from a run that did not finish project nothing
        print(projection(figures))
    if proc.returncode not in (0, 4):
        print("last stderr line:", (proc.stderr.strip().splitlines() or [""])[-1])
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    if not args.keep:
        subprocess.run([*command, "sandbox", "down"], env=env, capture_output=True)
    return 0


def projection(figures: dict) -> str:
    """400 coins x 365 days on N children: each coin's fetch + features and head, as measured in a
    child, scaled linearly in days (the fetch is requests at the per-host rate, the features and the
    head linear in rows), a child's coins one after another; vCPU-hours at the spot estimate.
    N children at once needs a compute environment of N vCPUs (``backends.batch`` ``max_vcpus``,
    16 by default): past it, Batch queues the rest."""
    from remote.providers.batch_jobs import VCPU_HOUR_USD

    scale = 365 / figures["days"]
    fetch = float(figures["fetch_and_features_per_coin_s"]) * scale
    head = float(figures["head_per_coin_s"]) * scale
    lines = [f"projection: 400 coins x 365 days; per coin {fetch:.0f} s fetch + features, {head:.0f} s head",
             f"  {'children':>8} {'wall':>10} {'vCPU-h':>8} {'$ (spot est.)':>14}"]  # fmt: skip
    for n in (8, 50, 100, 400):
        wall_s = -(-400 // n) * (fetch + head)
        vcpu_h = 400 * (fetch + head) / 3600
        lines.append(f"  {n:>8} {wall_s / 60:>8.1f} m {vcpu_h:>8.2f} {vcpu_h * VCPU_HOUR_USD:>14.2f}")
    lines.append("  (N children at once needs [backends.batch] max_vcpus >= N; the default 16 queues the rest)")
    return "\n".join(lines)


def step_seconds(events: list[dict]) -> dict[str, float]:
    """Each step's wall seconds, retries added, from ``--json``'s step transitions."""
    began: dict[str, float] = {}
    took: dict[str, float] = {}
    for e in events:
        step, kind = e.get("step"), str(e.get("kind", ""))
        if not step or not kind.startswith("step."):
            continue
        if kind == "step.running":
            began[step] = e["ts"]
        elif step in began:
            took[step] = took.get(step, 0.0) + e["ts"] - began.pop(step)
    return took


if __name__ == "__main__":
    sys.exit(main())
