"""Files the operator names (checklists, configs) are read only when they are regular files of
a sane size: ``--checklist /dev/zero`` used to grow memory without limit and a FIFO blocked
forever. One-line errors say which file and why.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from console.errors import ConsoleError

MAX_TEXT_INPUT_BYTES = 1 << 20
"""A checklist or config file larger than 1 MiB is not one."""


def read_regular_file(path: Path, *, what: str, error: type[ConsoleError], limit: int = MAX_TEXT_INPUT_BYTES) -> bytes:
    """The bytes of ``path``; ``error`` (one line) unless it is a regular file of at most ``limit`` bytes."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist", hint="check the path") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
        raise error(f"{what} {path} is {kind}, not a regular file", hint="name a file")
    if info.st_size > limit:
        raise error(f"{what} {path} is {info.st_size} bytes, over the {limit} byte limit", hint="name the right file")
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:  # it grew while we looked
        raise error(f"{what} {path} is over the {limit} byte limit", hint="name the right file")
    return data
