"""Files that readers see whole or not at all, even when the writer is killed.

`atomic_path` hands out a temporary name beside the target (carrying the writer's pid),
and renames it over the target only once the content is complete and synced. A writer
killed with SIGKILL cannot clean up after itself, so each new write first removes the
temporary files of writers that are no longer alive.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(path: Path) -> list[Path]:
    """Remove temporary siblings of ``path`` left by writers that died; the ones removed."""
    removed = []
    for tmp in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
        pid_part = tmp.name[len(Path(path).name) + 2 :].split("-", 1)[0]
        if pid_part.isdigit() and not _alive(int(pid_part)):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
