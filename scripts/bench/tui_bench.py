"""Benchmark the operator console: first frame, log ingestion under key presses, idle CPU.

Run by hand (not by the tests)::

    .venv/bin/python scripts/bench/tui_bench.py [--lines 100000] [--idle-s 10] [--repeats 3]

Targets (issue 8): launch to first frame <= 1.0 s; 100,000 log lines ingested in <= 1 s
while key presses are still handled; under 2% of a core when nothing changes.

What is measured:

- **first frame, cold**: the real ``console tui`` (the venv's entry point) started in a
  pseudo-terminal of 160x48, as an operator starts it, on a state dir holding one run;
  from before the process is spawned (interpreter start-up included) to the moment the
  terminal has received the first frame (the panes' titles). Then **screen filled**: to
  the moment the run's id is on the terminal (settings and the store loaded, the run
  drawn). ``q`` then quits it.
- **first frame, warm**: an app within this process (construction to ready).
- **ingest**: 100,000 lines appended to a step log of the followed run; from the end of
  the write to the moment the log pane holds the last line. Meanwhile a key is pressed
  every 20 ms (details on/off); the worst and median key round-trip are reported.
- **idle CPU**: process CPU time over ``--idle-s`` seconds with the screen up and
  nothing changing (the feed polls every 0.5 s and readings every 2 s as in real use).

The warm, ingest and idle figures run Textual headless (no terminal), so terminal output
costs are not counted there; the cold figures go through a real pseudo-terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import select
import signal
import statistics
import struct
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CHECKLIST = """
[checklist]
name = "bench"
[[steps]]
name = "work"
step = "wait"
[steps.params]
seconds = 1
"""


def _setup(state_dir: Path) -> str:
    from console.checklist.engine import Engine
    from console.steps import load_checklist
    from console.settings import Settings
    from console.state import StateStore

    path = state_dir.parent / "bench.toml"
    path.write_text(CHECKLIST)
    settings = Settings(state_dir=state_dir)
    store = StateStore.open(state_dir)
    return Engine(settings, store).create_run(load_checklist(str(path)))


def launch_in_terminal(state_dir: Path, run_id: str, size: tuple[int, int] = (160, 48)) -> tuple[float, float]:
    """Start ``console tui`` in a pseudo-terminal; seconds to the first frame and to the run on screen."""
    console = ROOT / ".venv" / "bin" / "console"
    env = {**os.environ, "RC_STATE_DIR": str(state_dir), "TERM": "xterm-256color"}
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: become `console tui`
        os.chdir(ROOT)
        os.execve(str(console), [str(console), "tui"], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    seen, first, filled = b"", None, None
    try:
        while filled is None:
            if time.perf_counter() - start > 60:
                raise SystemExit(f"`console tui` drew {'nothing' if first is None else 'no run'} within 60 s")
            ready, _, _ = select.select([fd], [], [], 0.01)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                raise SystemExit("`console tui` exited before drawing the run") from None
            now = time.perf_counter()
            seen = seen[-200_000:] + chunk
            if first is None and b"Checklist" in seen:
                first = now - start
            if first is not None and run_id.encode() in seen:
                filled = now - start
        os.write(fd, b"q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # drain until it has quit
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    if not os.read(fd, 1 << 16):
                        break
                except OSError:
                    break
    finally:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        os.close(fd)
    return first, filled  # type: ignore[return-value]


async def warm_and_ingest(state_dir: Path, run_id: str, lines: int, idle_s: float) -> dict[str, float]:
    import psutil

    from console.checklist.engine import run_dir
    from console.settings import Settings
    from console.state import StateStore
    from console.tui.app import OperatorApp
    from console.tui.logpane import LogPane

    settings = Settings(state_dir=state_dir)
    store = StateStore.open(state_dir)
    results: dict[str, float] = {}

    start = time.perf_counter()
    app = OperatorApp(settings, store, run_id=run_id)
    async with app.run_test(size=(160, 48)) as pilot:
        results["warm_first_frame_s"] = time.perf_counter() - start
        while not app.feed_updates:
            await pilot.pause(0.01)
        pane = app.query_one(LogPane)

        # -- key round-trip on a quiet screen, for comparison
        quiet = []
        for _ in range(10):
            t = time.perf_counter()
            await pilot.press("i")
            quiet.append(time.perf_counter() - t)
        results["key_latency_quiet_median_s"] = statistics.median(quiet)

        # -- ingestion under key presses: first as when this console drives (the engine
        # wakes the feed), then as when attached (the next half-second poll finds them)
        log = run_dir(settings, run_id) / "01-work.log"
        for mode in ("driving", "attached"):
            base = pane.total_lines
            payload = "".join(f"2026-01-05 09:30:00,000 INFO    {mode} epoch {i // 1000} batch {i % 1000:>4} loss {1 / (i + 1):.6f}\n"
                              for i in range(lines))
            with open(log, "a") as fh:
                fh.write(payload)
            written = time.perf_counter()
            if mode == "driving":
                app._wake.set()
            latencies = []
            while pane.total_lines < base + lines:
                t = time.perf_counter()
                await pilot.press("i")
                latencies.append(time.perf_counter() - t)
                if time.perf_counter() - written > 30:
                    raise SystemExit(f"only {pane.total_lines - base} lines after 30 s")
                await asyncio.sleep(0.01)
            results[f"{mode}_ingest_s"] = time.perf_counter() - written
            results[f"{mode}_keys_pressed"] = len(latencies)
            results[f"{mode}_key_latency_max_s"] = max(latencies) if latencies else 0.0
            results[f"{mode}_key_latency_median_s"] = statistics.median(latencies) if latencies else 0.0
            assert pane.log_widget.lines[-1].endswith(f"loss {1 / lines:.6f}")
        results["ingest_lines"] = lines
        results["kept_lines"] = pane.log_widget.line_count

        # -- idle CPU
        await pilot.pause(1.0)
        proc = psutil.Process()
        cpu0, wall0 = proc.cpu_times(), time.perf_counter()
        await asyncio.sleep(idle_s)
        cpu1, wall1 = proc.cpu_times(), time.perf_counter()
        used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        results["idle_cpu_pct_of_core"] = 100 * used / (wall1 - wall0)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tui-bench-") as tmp:
        state_dir = Path(tmp) / "state"
        run_id = _setup(state_dir)
        load_before = os.getloadavg()[0]
        launches = [launch_in_terminal(state_dir, run_id) for _ in range(args.repeats)]
        figures = asyncio.run(warm_and_ingest(state_dir, run_id, args.lines, args.idle_s))
    cold, filled = [first for first, _ in launches], [full for _, full in launches]
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load_before:.1f} before, {load:.1f} after (other work inflates every figure)")
    print(f"first frame, `console tui` in a terminal:    median {statistics.median(cold):.2f} s  (runs: {', '.join(f'{c:.2f}' for c in cold)})  target <= 1.0 s")
    print(f"screen filled (run drawn), same launches:    median {statistics.median(filled):.2f} s  (runs: {', '.join(f'{c:.2f}' for c in filled)})")
    print(f"first frame, warm (in process):               {figures['warm_first_frame_s']:.2f} s")
    print(f"key round-trip on a quiet screen:             median {1000 * figures['key_latency_quiet_median_s']:.0f} ms")
    for mode in ("driving", "attached"):
        print(f"ingest {figures['ingest_lines']:,.0f} lines ({mode + ')':<9}           {figures[mode + '_ingest_s']:.2f} s  target <= 1.0 s"
              f"  (kept {figures['kept_lines']:,.0f}; {figures[mode + '_keys_pressed']:.0f} key presses handled meanwhile,"
              f" median {1000 * figures[mode + '_key_latency_median_s']:.0f} ms, worst {1000 * figures[mode + '_key_latency_max_s']:.0f} ms)")
    print(f"idle CPU:                                     {figures['idle_cpu_pct_of_core']:.2f}% of a core  target < 2%")


if __name__ == "__main__":
    main()
