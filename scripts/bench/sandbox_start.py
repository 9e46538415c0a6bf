"""Bench: how long the sandbox cloud takes to come up and to serve a launch, by hand.

Run: ``.venv/bin/python scripts/bench/sandbox_start.py [--rounds 3]``. Prints, per round
(each on a fresh state dir): cold `ensure_up`, warm `ensure_up` (median of 20), launch
until the SSH endpoint answers a command, terminate until confirmed, and `down`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import paramiko

from remote.providers.base import LaunchSpec
from remote.sandbox.lifecycle import down, ensure_up


def _round() -> dict[str, float]:
    state = Path(tempfile.mkdtemp(prefix="rc-bench-"))
    out: dict[str, float] = {}
    t = time.perf_counter()
    endpoints = ensure_up(state)
    out["cold ensure_up s"] = time.perf_counter() - t
    warm = []
    for _ in range(20):
        t = time.perf_counter()
        ensure_up(state)
        warm.append(time.perf_counter() - t)
    out["warm ensure_up ms (median)"] = statistics.median(warm) * 1000
    provider = endpoints.ec2_provider(state / "keys")
    t = time.perf_counter()
    inst = provider.launch(LaunchSpec(run_id="bench", owner="bench", ssh_cidr="127.0.0.1/32")).instance
    endpoint = endpoints.ssh_endpoint(inst.id)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key_type, b64 = endpoint.host_key.split()
    import base64
    client.get_host_keys().add(f"[{endpoint.host}]:{endpoint.port}", key_type,
                               paramiko.PKey.from_type_string(key_type, base64.b64decode(b64)))
    client.connect(endpoint.host, port=endpoint.port, username="ubuntu", key_filename=str(inst.key_path),
                   look_for_keys=False, allow_agent=False)
    _, stdout, _ = client.exec_command("true")
    stdout.channel.recv_exit_status()
    out["launch -> first SSH command s"] = time.perf_counter() - t
    client.close()
    t = time.perf_counter()
    provider.terminate(inst.id)
    out["terminate confirmed s"] = time.perf_counter() - t
    t = time.perf_counter()
    down(state)
    out["down s"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = [_round() for _ in range(args.rounds)]
    for name in rounds[0]:
        values = [r[name] for r in rounds]
        print(f"{name:32s} " + "  ".join(f"{v:8.3f}" for v in values))


if __name__ == "__main__":
    main()
