"""Which local files a sync leaves out: gitignore-style patterns.

`IgnoreRules.for_root` reads the always-left-out defaults, then the root's ``.gitignore``
and ``.consoleignore``, then the caller's extra patterns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_EXCLUDES = (".git/", "__pycache__/", "*.pyc", ".rc-sync-*", ".DS_Store")
"""Always left out, before .gitignore and .consoleignore are read."""
IGNORE_FILES = (".gitignore", ".consoleignore")


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _glob_to_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("/.*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        elif c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class IgnoreRules:
    """gitignore-style patterns: ``#`` comments, ``!`` re-includes, trailing ``/`` for
    directories, a ``/`` anywhere but the end anchors to the root, ``*``, ``?``, ``**``,
    ``[...]``. The last matching pattern wins; an ignored directory hides everything in it.
    """

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self._rules: list[_Rule] = []
        for line in patterns:
            self.add(line)

    @classmethod
    def for_root(cls, root: Path, extra: Iterable[str] = ()) -> IgnoreRules:
        """Defaults, then the root's .gitignore and .consoleignore, then ``extra``."""
        rules = cls(DEFAULT_EXCLUDES)
        for name in IGNORE_FILES:
            path = root / name
            if path.is_file():
                for line in path.read_text(errors="replace").splitlines():
                    rules.add(line)
        for line in extra:
            rules.add(line)
        return rules

    def add(self, line: str) -> None:
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            return
        line = line.rstrip() if not line.endswith("\\ ") else line
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        line = line.lstrip("/")
        body = _glob_to_regex(line)
        regex = re.compile(("^" if anchored else "^(?:.*/)?") + body + "$")
        self._rules.append(_Rule(regex, negate, dir_only))

    def ignored(self, rel_path: str, is_dir: bool) -> bool:
        """Whether ``rel_path`` (POSIX, relative to the root) is left out by the patterns."""
        verdict = False
        for rule in self._rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(rel_path):
                verdict = not rule.negate
        return verdict
