"""Write the training stack's settings into ``console.toml`` (``console infra deploy --write-config``).

Only the keys the stack owns are touched: ``aws_region``, ``sagemaker_role_arn`` and ``s3_bucket``
at the top level and, when the stack has the engine's queue, ``queue``, ``compute_environment``,
``job_definition`` and ``bucket`` in ``[backends.batch]``. Every other line (comments, other
tables) is kept byte for byte. The file is written to a temporary file and renamed over the old
one, so a failure leaves the old file whole. No secret is ever among the values.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import platformdirs

from console.errors import ConfigError
from console.settings import APP_NAME

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _key_of(line: str) -> str | None:
    m = re.match(r"^\s*([A-Za-z0-9_-]+)\s*=", line)
    return m.group(1) if m else None


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _set_section(lines: list[str], section: str | None, values: dict[str, str]) -> list[str]:
    """``lines`` (each with its newline) with ``values`` set in ``section`` (None: the top level)."""
    headers = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    if section is None:
        start, end = 0, headers[0] if headers else len(lines)
    else:
        found = [i for i in headers if _HEADER.match(lines[i]).group(1) == section]  # type: ignore[union-attr]
        if not found:
            tail = [] if not lines or lines[-1].endswith("\n") else ["\n"]
            body = [f"{k} = {_quote(v)}\n" for k, v in values.items()]
            return [*lines, *tail, *(["\n"] if lines else []), f"[{section}]\n", *body]
        start = found[0] + 1
        end = next((i for i in headers if i > found[0]), len(lines))
    out, todo = list(lines), dict(values)
    for i in range(start, end):
        key = _key_of(out[i])
        if key in todo:
            out[i] = f"{key} = {_quote(todo.pop(key))}\n"
    insert_at = end
    while section is None and insert_at > start and not out[insert_at - 1].strip():
        insert_at -= 1  # new top-level keys before the blank lines that precede the first table
    if insert_at > 0 and not out[insert_at - 1].endswith("\n"):
        out[insert_at - 1] += "\n"
    return out[:insert_at] + [f"{k} = {_quote(v)}\n" for k, v in todo.items()] + out[insert_at:]


def config_target(found: Path | None) -> Path:
    """The file to write: the one the console read, else the user config dir's ``console.toml``."""
    return found if found is not None else platformdirs.user_config_path(APP_NAME) / "console.toml"


def write_config(path: Path, top: dict[str, str], batch: dict[str, str]) -> list[str]:
    """Set ``top`` at the top level and ``batch`` in ``[backends.batch]``; the keys written."""
    old = path.read_bytes().decode("utf-8") if path.exists() else ""
    lines = old.splitlines(keepends=True)
    lines = _set_section(lines, None, top)
    if batch:
        lines = _set_section(lines, "backends.batch", batch)
    text = "".join(lines)
    try:
        parsed: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} would not be valid TOML after the update ({exc}); nothing written",
                          hint="fix the file, or write the printed lines by hand") from None  # fmt: skip
    table = parsed.get("backends", {}).get("batch", {})
    got = {**{k: parsed.get(k) for k in top}, **{f"backends.batch.{k}": table.get(k) for k in batch}}
    want = {**top, **{f"backends.batch.{k}": v for k, v in batch.items()}}
    if got != want:  # e.g. the keys are set in a form this writer does not edit (dotted keys, inline tables)
        raise ConfigError(f"{path} sets these keys in a form this command does not edit; nothing written",
                          hint="write the printed lines by hand")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".console.toml.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return [*top, *(f"backends.batch.{k}" for k in batch)]
