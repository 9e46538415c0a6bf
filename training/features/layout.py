"""The part-file layout of a feature file: a folder of immutable parquet parts and a
manifest, so that new candles cost a small write instead of rewriting years of rows.

    FEATURES/<SYMBOL>.parquet/             a folder (named like a file, as Spark does, so
                                           every path that names the file still names it)
        _manifest.json                     what the file holds: symbol, spec version, feature
                                           hash, feature names, rows, and the parts in order
        part-000000-<token>.parquet        rows in time order; never modified once written
        part-000001-<token>.parquet
        .lock                              held by a writer (readers never take it)

Readers see a whole version or none: parts are written under hidden temporary names,
renamed into place, and only then does the manifest (itself replaced atomically) name
them. A part the manifest does not name is invisible to readers and removed by the next
writer. A reader that loses a race with a writer removing old parts re-reads the
manifest and tries again. The leading ``_`` and ``.`` keep the manifest and temporary
files out of a plain ``pyarrow.parquet.read_table(folder)``.

The older layout, one parquet file at the same path, is still read (see
`training.features.io`); the first write replaces it with a folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from training.atomic import atomic_path

MANIFEST = "_manifest.json"
LOCK = ".lock"
FORMAT = "retrain-console-features/2"
CATEGORICAL_COLUMNS = ("session", "volatility_regime")
ROW_GROUP_ROWS = 16_384
"""Rows per parquet row group inside a part (small enough to read one cheaply)."""


class LayoutError(Exception):
    """A part folder is damaged: no manifest, a bad manifest, or a part missing or torn."""


@dataclass(frozen=True)
class Part:
    """One part file as the manifest names it: its rows and their first and last timestamps (ns)."""

    file: str
    rows: int
    first_ns: int
    last_ns: int

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "rows": self.rows, "first_ns": self.first_ns, "last_ns": self.last_ns}


@dataclass(frozen=True)
class Manifest:
    """The manifest: the file's metadata payload (symbol, hash, names...) and its parts in order."""

    meta: dict[str, Any]
    parts: tuple[Part, ...]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)


def is_part_folder(path: Path) -> bool:
    return Path(path).is_dir()


def read_manifest(path: Path) -> Manifest:
    """The folder's manifest; `LayoutError` when it is missing or malformed."""
    try:
        raw = (Path(path) / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise LayoutError(f"{path} has no {MANIFEST}") from None
    except OSError as exc:
        raise LayoutError(f"{path}/{MANIFEST} cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(data.get("format"))
        parts = tuple(
            Part(str(p["file"]), int(p["rows"]), int(p["first_ns"]), int(p["last_ns"])) for p in data["parts"]
        )
        meta = dict(data["meta"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise LayoutError(f"{path}/{MANIFEST} is malformed") from None
    for p in parts:
        if "/" in p.file or not p.file.startswith("part-"):
            raise LayoutError(f"{path}/{MANIFEST} names a part outside the folder: {p.file!r}")
    return Manifest(meta, parts)


def check_parts(path: Path, manifest: Manifest) -> None:
    """Each named part's parquet footer holds the rows the manifest says (cheap: footers
    only). Raises `LayoutError` on a torn part, FileNotFoundError on a missing one (a
    writer may have just replaced it: re-read the manifest)."""
    for part in manifest.parts:
        try:
            rows = pq.read_metadata(Path(path) / part.file).num_rows
        except FileNotFoundError:
            raise
        except (pa.ArrowException, OSError) as exc:
            raise LayoutError(f"part {part.file} is torn ({_first_line(exc)})") from None
        if rows != part.rows:
            raise LayoutError(f"part {part.file} holds {rows} rows, the manifest says {part.rows}")


def read_parts(path: Path, parts: Sequence[Part], columns: Sequence[str] | None = None) -> pa.Table:
    """The named parts concatenated in order (optionally only ``columns``).

    Raises FileNotFoundError when a part vanished (a writer replaced it: re-read the
    manifest) and `LayoutError` when one is torn or disagrees with the others.
    """

    def one(part: Part) -> pa.Table:
        try:
            table = pq.read_table(Path(path) / part.file, columns=list(columns) if columns else None, memory_map=True)
        except FileNotFoundError:
            raise
        except (pa.ArrowException, OSError) as exc:
            raise LayoutError(f"part {part.file} is torn ({_first_line(exc)})") from None
        if table.num_rows != part.rows:
            raise LayoutError(f"part {part.file} holds {table.num_rows} rows, the manifest says {part.rows}")
        return table.replace_schema_metadata(None)

    if not parts:
        raise LayoutError(f"{path}/{MANIFEST} names no parts")
    if len(parts) == 1:
        tables = [one(parts[0])]
    else:
        with ThreadPoolExecutor(2) as pool:
            tables = list(pool.map(one, parts))
    try:
        # Permissive: pyarrow builds categoricals on large strings and reads them back on
        # strings, so parts written from memory and read back can differ in that alone.
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise LayoutError(f"parts of {path} disagree on their columns ({_first_line(exc)})") from None


def last_rows(path: Path, part: Part, columns: Sequence[str] | None = None) -> pa.Table:
    """The last row group of ``part`` (at most `ROW_GROUP_ROWS` rows): what an
    incremental rebuild compares its recomputed overlap with."""
    try:
        f = pq.ParquetFile(Path(path) / part.file, memory_map=True)
        return f.read_row_group(f.num_row_groups - 1, columns=list(columns) if columns else None)
    except (pa.ArrowException, OSError) as exc:
        raise LayoutError(f"part {part.file} is torn ({_first_line(exc)})") from None


def part_of(table: pa.Table, file: str) -> Part:
    ts = table.column("timestamp")
    ns = ts.cast(pa.timestamp("ns", tz=ts.type.tz)).cast(pa.int64())
    first = ns[0].as_py() if table.num_rows else 0
    last = ns[-1].as_py() if table.num_rows else 0
    return Part(file, table.num_rows, int(first), int(last))


def write(
    path: Path, meta: dict[str, Any], keep: Sequence[Part], new: Sequence[pa.Table], metadata_key: bytes
) -> Manifest:
    """Make ``path`` hold the parts ``keep`` (already in the folder) followed by ``new``.

    The new parts are written (in parallel) and renamed into place, then the manifest is
    replaced, then parts no longer named are removed: a reader sees the old version or
    the new one. ``meta`` is the file's metadata payload; each part's parquet schema
    carries it too (with the part's own row count) under ``metadata_key``, so a part on
    its own still says what it is. A single parquet file at ``path`` (the older layout)
    is replaced by a folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        return _replace_file_with_folder(path, meta, new, metadata_key)
    if not path.exists():
        return _create_folder(path, meta, new, metadata_key)
    with _locked(path):
        if keep:
            current = {p.file for p in read_manifest(path).parts}
            if not {p.file for p in keep} <= current:
                raise LayoutError(f"{path} was rewritten by another writer meanwhile; run the build again")
        seq = _next_sequence(path)
        names = [f"part-{seq + i:06d}-{secrets.token_hex(4)}.parquet" for i in range(len(new))]
        written = _write_parts(path, names, new, meta, metadata_key)
        manifest = Manifest(meta | {"rows": sum(p.rows for p in (*keep, *written))}, (*keep, *written))
        _write_manifest(path, manifest)
        _remove_unnamed(path, manifest)
    return manifest


def _create_folder(path: Path, meta: dict[str, Any], new: Sequence[pa.Table], key: bytes) -> Manifest:
    """A new folder, written beside ``path`` and renamed into place whole."""
    tmp = _tmp_folder(path)
    try:
        names = [f"part-{i:06d}-{secrets.token_hex(4)}.parquet" for i in range(len(new))]
        written = _write_parts(tmp, names, new, meta, key)
        manifest = Manifest(meta | {"rows": sum(p.rows for p in written)}, tuple(written))
        _write_manifest(tmp, manifest)
        try:
            os.rename(tmp, path)
        except OSError:
            if not path.is_dir():
                raise
            # Another writer created it first: write into theirs instead.
            return write(path, meta, (), new, key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _replace_file_with_folder(path: Path, meta: dict[str, Any], new: Sequence[pa.Table], key: bytes) -> Manifest:
    """The older single-file layout becomes a folder. A folder cannot replace a file in
    one rename, so for a moment nothing is at ``path``; readers retry that moment away."""
    tmp = _tmp_folder(path)
    old = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.old"
    try:
        names = [f"part-{i:06d}-{secrets.token_hex(4)}.parquet" for i in range(len(new))]
        written = _write_parts(tmp, names, new, meta, key)
        manifest = Manifest(meta | {"rows": sum(p.rows for p in written)}, tuple(written))
        _write_manifest(tmp, manifest)
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except OSError:
            os.rename(old, path)  # put the old file back rather than leave nothing
            raise
        old.unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _tmp_folder(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmpdir"):  # left by a writer that died
        pid = stale.name[len(path.name) + 2 :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmpdir"
    tmp.mkdir()
    return tmp


def _write_parts(
    folder: Path, names: Sequence[str], tables: Sequence[pa.Table], meta: dict[str, Any], key: bytes
) -> list[Part]:
    def one(job: tuple[str, pa.Table]) -> Part:
        name, table = job
        payload = json.dumps(meta | {"rows": table.num_rows}).encode()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), key: payload})
        with atomic_path(folder / name) as tmp:
            # Dictionary encoding only pays for the categorical columns; on the float
            # columns it doubles the write time for nothing.
            dictionary = [c for c in CATEGORICAL_COLUMNS if c in table.column_names]
            pq.write_table(table, tmp, use_dictionary=dictionary, compression="lz4", row_group_size=ROW_GROUP_ROWS)
        return part_of(table, name)

    jobs = list(zip(names, tables, strict=True))
    if len(jobs) <= 1:
        return [one(j) for j in jobs]
    # pyarrow releases the GIL while encoding: two threads use both cores.
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, jobs))


def _write_manifest(folder: Path, manifest: Manifest) -> None:
    body = {"format": FORMAT, "meta": manifest.meta, "parts": [p.as_json() for p in manifest.parts]}
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps(body, indent=1) + "\n")


def _next_sequence(folder: Path) -> int:
    seqs = [int(p.name.split("-")[1]) for p in folder.glob("part-*.parquet") if p.name.split("-")[1].isdigit()]
    return max(seqs, default=-1) + 1


def _remove_unnamed(folder: Path, manifest: Manifest) -> None:
    named = {p.file for p in manifest.parts}
    for p in folder.glob("part-*.parquet"):
        if p.name not in named:
            p.unlink(missing_ok=True)
    for tmp in folder.glob(".part-*.tmp"):  # left by a writer killed mid-part
        pid = tmp.name.rsplit(".", 2)[-2].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer per folder at a time (two would remove each other's new parts)."""
    with open(folder / LOCK, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
