"""The watcher of a `command` step's process: runs the command, writes its exit status to a file.

Started by the `command` step as ``python command_watch.py STATUS OUTPUT -- ARGV...`` in a
session of its own, so it outlives a killed console: the command's output goes to OUTPUT
and, when it ends, ``{"exit": CODE, "finished_at": T}`` is written to STATUS atomically.
A console that resumes the run reads STATUS (or waits for it) instead of running the
command a second time. Standard library only: it is run by path, not imported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def _write_status(path: str, doc: dict[str, object]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: command_watch.py STATUS OUTPUT -- ARGV...", file=sys.stderr)
        return 2
    status, output, command = argv[0], argv[1], argv[3:]
    with open(output, "ab", buffering=0) as out:
        try:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as exc:
            _write_status(status, {"exit": 127, "error": exc.strerror or str(exc), "finished_at": time.time()})
            return 127

        def forward(signum: int, _frame: object) -> None:
            proc.send_signal(signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, forward)
        code = proc.wait()
    _write_status(status, {"exit": code, "finished_at": time.time()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
