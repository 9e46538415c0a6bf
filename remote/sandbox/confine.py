"""Keep a sandbox host's commands inside its instance root: Linux Landlock, no privileges needed.

A sandbox host runs real commands on this machine, so without a boundary ``console exec
INSTANCE -- sh -c 'echo x > /etc/x'`` (or a sync to ``INSTANCE:/etc/x``) would write into
the operator's own ``/etc``. Every process a host starts is restricted before it execs:

- everywhere: read, list and execute only;
- under the instance root: anything (it is the instance's disk);
- ``/dev/shm`` (memory, for PyTorch's workers) and the character devices ``/dev/null``,
  ``/dev/zero``, ``/dev/full``, ``/dev/random``, ``/dev/urandom``, ``/dev/tty``: writable.

Landlock follows the real file hierarchy, so a symlink inside the root that points outside it
does not open a way out. `Confinement.available` is False on a kernel without Landlock (or
off Linux); the host then says so in every command's stderr rather than pretending.
SFTP transfers are confined separately, in `remote.sandbox.hosts` (paths resolved against
the root, symlinks included).
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from pathlib import Path

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_WRITES_ABI1 = sum(1 << bit for bit in range(4, 13))  # remove/make dir, file, sym, fifo, sock, char, block
REFER, TRUNCATE = 1 << 13, 1 << 14
_READ_ONLY = EXECUTE | READ_FILE | READ_DIR
_WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")


class Confinement:
    """A Landlock ruleset for one instance root, built once; `restrict` applies it to the caller."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._fd: int | None = None
        self.reason = ""
        """Why commands are not confined, when they are not."""
        if not sys.platform.startswith("linux"):
            self.reason = "Landlock needs Linux"
            return
        try:
            self._fd = self._build()
        except OSError as exc:
            self.reason = f"Landlock unavailable: {exc.strerror or exc}"

    @property
    def available(self) -> bool:
        return self._fd is not None

    def _build(self) -> int:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
        syscall.restype = ctypes.c_long
        abi = syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
        if abi < 1:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        every = _READ_ONLY | WRITE_FILE | _WRITES_ABI1 | (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0)
        attr = struct.pack("=Q", every)
        fd = syscall(_CREATE_RULESET, ctypes.c_char_p(attr), ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
        if fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        file_rights = WRITE_FILE | READ_FILE | (TRUNCATE if abi >= 3 else 0)
        rules = [("/", _READ_ONLY), (str(self.root), every), ("/dev/shm", every)]
        rules += [(device, file_rights) for device in _WRITABLE_DEVICES]
        try:
            for path, rights in rules:
                self._add(syscall, fd, path, rights)
        except OSError:
            os.close(fd)
            raise
        self._syscall, self._libc = syscall, libc
        return int(fd)

    @staticmethod
    def _add(syscall: object, ruleset: int, path: str, rights: int) -> None:
        try:
            target = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            if path == "/" or path.startswith("/dev/"):
                return  # a device this machine lacks is simply not writable
            raise
        try:
            beneath = struct.pack("=Qi", rights, target)
            done = syscall(  # type: ignore[operator]
                _ADD_RULE,
                ctypes.c_int(ruleset),
                ctypes.c_int(_RULE_PATH_BENEATH),
                ctypes.c_char_p(beneath),
                ctypes.c_uint32(0),
            )
            if done != 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        finally:
            os.close(target)

    def restrict(self) -> None:
        """Confine the calling process (a ``preexec_fn``: runs in the child between fork and exec)."""
        if self._fd is None:
            return
        if self._libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or self._syscall(
            _RESTRICT_SELF, ctypes.c_int(self._fd), ctypes.c_uint32(0)
        ):
            os._exit(126)  # never run a command unconfined when confinement was promised

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
