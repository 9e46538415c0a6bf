"""Bench: delay from a line written to a remote log to its arrival through the runner's tail.

Starts an OpenSSH sshd on 127.0.0.1 with throwaway keys, runs a detached job on it that
writes a line with its own wall-clock timestamp every ``--interval`` seconds, and follows
the job with `SSHRunner.follow_job` (the same path the train step uses). Both ends share
a clock, so each line's delay is arrival time minus the timestamp in it. Target (issue
4): p95 at most 250 ms.

    .venv/bin/python scripts/bench/tail_latency.py [--lines 200] [--interval 0.02]

Run by hand, not by the tests. Needs /usr/sbin/sshd.
"""

from __future__ import annotations

import argparse
import getpass
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from remote.ssh import SSHRunner, SSHTarget  # noqa: E402
from remote.sandbox.openssh import start_sshd as _start_sshd, write_ed25519_key  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--poll", type=float, default=0.05, help="follow_job poll interval, s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rc-bench-tail-") as tmp_s:
        tmp = Path(tmp_s)
        key = tmp / "id_ed25519"
        authorized = tmp / "authorized_keys"
        authorized.write_text(write_ed25519_key(key) + "\n")
        server = _start_sshd(tmp / "sshd", authorized)
        try:
            target = SSHTarget(instance_id="i-bench", host="127.0.0.1", port=server.port, user=getpass.getuser(),
                               key_path=key, known_hosts_dir=tmp / "known", publication=server.console_output,
                               jobs_dir=str(tmp / "jobs"))
            writer = (
                "import sys, time\n"
                f"for i in range({args.lines}):\n"
                "    print(f'{time.time():.6f} line-{i}', flush=True)\n"
                f"    time.sleep({args.interval})\n"
            )
            (tmp / "writer.py").write_text(writer)
            delays: list[float] = []

            def on_line(line: str) -> None:
                stamp = float(line.split()[0])
                delays.append(time.time() - stamp)

            with SSHRunner(target) as runner:
                runner.run_detached([sys.executable, str(tmp / "writer.py")], "tail-bench")
                result = runner.follow_job("tail-bench", on_line, poll_s=args.poll)
            assert len(delays) == args.lines, (len(delays), result)
            ms = sorted(d * 1000 for d in delays)
            p95 = ms[int(0.95 * (len(ms) - 1))]
            print(f"lines: {len(ms)}, written every {args.interval * 1000:.0f} ms, polled every {args.poll * 1000:.0f} ms")
            print(f"delay ms: median {statistics.median(ms):.1f}, p95 {p95:.1f}, max {ms[-1]:.1f} (target p95 <= 250)")
            print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
