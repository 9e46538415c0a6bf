"""Bench: our delta sync against ``rsync -e ssh``, side by side, to a local sshd.

Builds a directory of parquet-like files (random bytes: compressed parquet does not
compress further), starts an OpenSSH sshd on 127.0.0.1 with throwaway keys, then times
for each tool: the first sync into an empty directory, and a second sync with nothing
changed. Targets (issue 4): ours within 1.25x rsync on the first sync; the no-change
resync in at most 0.5 s.

    .venv/bin/python scripts/bench/sync_vs_rsync.py [--mib 1024] [--files 40] [--repeats 2]

Run by hand, not by the tests. Needs /usr/sbin/sshd, ssh and rsync.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from remote.ssh import SSHRunner, SSHTarget  # noqa: E402
from remote.sandbox.openssh import start_sshd as _start_sshd, write_ed25519_key  # noqa: E402


def make_data(root: Path, mib: int, files: int) -> None:
    root.mkdir(parents=True)
    per = (mib << 20) // files
    block = os.urandom(1 << 20)
    for i in range(files):
        with open(root / f"SYM{i:03d}-USD.parquet", "wb") as fh:
            left = per
            while left:
                # Vary each MiB so no two files share content (rsync could not cheat either).
                chunk = (i.to_bytes(4, "little") + block)[: min(left, 1 << 20)]
                fh.write(chunk)
                left -= len(chunk)
    (root / ".gitignore").write_text("*.tmp\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None,
                        help="where data and destinations live (e.g. /dev/shm to take the disk out)")
    args = parser.parse_args()
    for tool in ("ssh", "rsync", "/usr/sbin/sshd"):
        if not shutil.which(tool) and not Path(tool).exists():
            sys.exit(f"{tool} is required for this bench")

    with tempfile.TemporaryDirectory(prefix="rc-bench-sync-", dir=args.workdir) as tmp_s:
        tmp = Path(tmp_s)
        client_key = tmp / "id_ed25519"
        authorized = tmp / "authorized_keys"
        authorized.write_text(write_ed25519_key(client_key) + "\n")
        server = _start_sshd(tmp / "sshd", authorized)
        try:
            data = tmp / "data"
            print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            t0 = time.perf_counter()
            make_data(data, args.mib, args.files)
            print(f"data: {args.files} files, {args.mib} MiB, made in {time.perf_counter() - t0:.1f} s")
            import getpass

            target = SSHTarget(instance_id="i-bench", host="127.0.0.1", port=server.port,
                               user=getpass.getuser(), key_path=client_key, known_hosts_dir=tmp / "known",
                               publication=server.console_output, jobs_dir=str(tmp / "jobs"))
            from remote.sync import sync_dir

            results: dict[str, list[float]] = {k: [] for k in
                                               ("rsync first", "rsync again", "ours first", "ours again",
                                                "ours again (new connection)")}
            with SSHRunner(target) as runner:
                ssh_cmd = shlex.join(runner.openssh_argv()[:-1])
                for rep in range(args.repeats):
                    dest_r = tmp / f"dest-rsync-{rep}"
                    dest_o = tmp / f"dest-ours-{rep}"
                    rsync = ["rsync", "-a", "-e", ssh_cmd, f"{data}/", f"127.0.0.1:{dest_r}/"]
                    cache = tmp / f"cache-{rep}"

                    def run_rsync() -> None:
                        for label in ("rsync first", "rsync again"):
                            t0 = time.perf_counter()
                            subprocess.run(rsync, check=True)
                            results[label].append(time.perf_counter() - t0)

                    def run_ours() -> object:
                        t0 = time.perf_counter()
                        first = sync_dir(runner, data, str(dest_o), cache_dir=cache)
                        results["ours first"].append(time.perf_counter() - t0)
                        t0 = time.perf_counter()
                        again = sync_dir(runner, data, str(dest_o), cache_dir=cache)
                        results["ours again"].append(time.perf_counter() - t0)
                        assert again.files_sent == 0, again
                        t0 = time.perf_counter()
                        with SSHRunner(target) as fresh:
                            sync_dir(fresh, data, str(dest_o), cache_dir=cache)
                        results["ours again (new connection)"].append(time.perf_counter() - t0)
                        return first

                    # Alternate who goes first so neither always meets a warmer machine.
                    if rep % 2:
                        first = run_ours()
                        run_rsync()
                    else:
                        run_rsync()
                        first = run_ours()
                    print(f"repeat {rep + 1}: ours first {first.summary()} via {first.transport}")
                    shutil.rmtree(dest_r)
                    shutil.rmtree(dest_o)
            print(f"\n{'':30}{'median s':>10}{'min s':>10}")
            for label, times in results.items():
                print(f"{label:30}{statistics.median(times):10.3f}{min(times):10.3f}")
            ratio = statistics.median(results["ours first"]) / statistics.median(results["rsync first"])
            print(f"\nfirst sync: ours / rsync = {ratio:.2f} (target <= 1.25)")
            print(f"no-change resync: {statistics.median(results['ours again']):.3f} s (target <= 0.5 s)")
            mib_s = args.mib / statistics.median(results["ours first"])
            print(f"ours first-sync throughput: {mib_s:.0f} MiB/s on {os.cpu_count()} CPUs; "
                  f"load average now {os.getloadavg()[0]:.1f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
