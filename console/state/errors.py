"""What went wrong with the state database, in the operator's words, with the right advice.

SQLite reports a damaged file, a full disk, a read-only file and a busy database through the
same exception classes; only the primary result code tells them apart. Advice differs: only a
corrupt database should be moved aside. A full disk is not bad input (exit 1, like any failure
of the machine); the others are about the state dir the operator chose (exit 2).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from console.errors import EXIT_STEP_FAILED, StateError

SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR = 5, 6, 8, 10
SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 11, 13, 14, 26


class StateDiskFull(StateError):
    """The disk holding the state database is full; the database itself is fine."""

    exit_code = EXIT_STEP_FAILED


def state_error(path: Path, exc: BaseException) -> StateError:
    """The one-line error for ``exc``, raised by SQLite while using the database at ``path``."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if primary == SQLITE_FULL or "disk is full" in text:
        return StateDiskFull(
            f"state database {path}: the disk is full",
            hint=f"free space on the disk holding {path.parent}; the database is not damaged",
        )
    if primary == SQLITE_READONLY or "readonly database" in text:
        return StateError(
            f"state database {path} is read-only",
            hint="make it and its folder writable, or pass another --state-dir; it is not damaged",
        )
    if primary in (SQLITE_BUSY, SQLITE_LOCKED) or "locked" in text:
        return StateError(f"state database {path} is busy: another console holds it", hint="try again in a moment")
    if primary in (SQLITE_CORRUPT, SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return StateError(
            f"state database {path} is damaged and unreadable ({text})",
            hint="move it aside to start fresh, or pass another --state-dir",
        )
    if primary in (SQLITE_IOERR, SQLITE_CANTOPEN):
        return StateError(f"cannot read or write state database {path} ({text})", hint="check the disk and the path")
    if isinstance(exc, sqlite3.DatabaseError):
        return StateError(f"state database {path}: {text}", hint="see `console --debug` for the details")
    return StateError(f"state database {path}: {text}")
