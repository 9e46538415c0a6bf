"""Feature files: ``FEATURES/<SYMBOL>.parquet``, the one contract between the feature
builder, the trainer and the runtime checks.

What a feature file holds, whatever its layout:

- columns ``timestamp`` (datetime64[ns, UTC], strictly increasing), ``open``, ``high``,
  ``low``, ``close``, ``volume`` (float64), the categorical columns ``session`` and
  ``volatility_regime`` (strings), then every numeric feature, in spec order;
- metadata ``{"symbol", "spec_version", "feature_hash", "feature_names", "rows"}``.

The feature count is ``len(feature_names)``: timestamp, OHLCV and the categorical
columns are not features (as in the runbook).

Two layouts are read. Written today: a folder of parquet parts and a manifest
(`training.features.layout`), so an incremental rebuild writes a few thousand rows, not
the whole history. Written before: one parquet file with the metadata as JSON under the
schema metadata key ``retrain_console``; it is still read, and the next build turns it
into a folder. Callers name the path either way and go through this module.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from training.features import layout
from training.features.layout import CATEGORICAL_COLUMNS, LayoutError, Manifest, Part  # noqa: F401 (re-exported)

META_KEY = b"retrain_console"
BASE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
PART_ROWS = 300_000
"""Rows per part in a full build (about 7 months of minutes): a two-year file is four
parts, written two at a time."""

_T = TypeVar("_T")


class FeatureFileError(Exception):
    """A feature file is missing, damaged, or lacks its metadata."""

    exit_code = 2


@dataclass(frozen=True)
class FeatureFileMeta:
    """What a feature file says about itself."""

    symbol: str
    spec_version: str
    feature_hash: str
    feature_names: tuple[str, ...]
    rows: int

    @property
    def feature_count(self) -> int:
        return len(self.feature_names)

    def payload(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "spec_version": self.spec_version,
            "feature_hash": self.feature_hash,
            "feature_names": list(self.feature_names),
            "rows": self.rows,
        }


def feature_hash(spec_version: str, definitions: Sequence[dict[str, Any]], timeframe: str = "1m") -> str:
    """A stable hash of a feature spec: version, and each feature's name and parameters in order,
    and the candle timeframe its rows are (only when not the one-minute default, so the hashes
    of one-minute files stay what they were).

    Any change to a name, the order, a parameter (an RSI period, say) or the timeframe changes it.
    """
    body: dict[str, Any] = {"spec_version": spec_version, "features": list(definitions)}
    if timeframe != "1m":
        body["timeframe"] = timeframe
    canonical = json.dumps(
        body,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


# ------------------------------------------------------------------ writing


def frame_to_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as an Arrow table, sharing the float columns' memory (no copy: for two
    years of minutes `pa.Table.from_pandas` spends a third of a second copying)."""
    schema = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False)
    arrays = []
    for name, field in zip(frame.columns, schema, strict=True):
        column = frame[name]
        if pa.types.is_floating(field.type) and column.dtype.kind == "f":
            arrays.append(pa.array(column.to_numpy(), type=field.type))
        else:
            arrays.append(pa.Array.from_pandas(column, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_feature_file(path: Path, frame: pd.DataFrame, meta: FeatureFileMeta, *, recent_rows: int = 0) -> None:
    """Write ``frame`` with ``meta`` as the whole file: readers see the old file or the new, never half."""
    _check_columns(frame.columns, meta, "frame")
    write_feature_table(path, frame_to_table(frame), meta, recent_rows=recent_rows)


def write_feature_table(path: Path, table: pa.Table, meta: FeatureFileMeta, *, recent_rows: int = 0) -> None:
    """`write_feature_file` for an Arrow table: parts of about `PART_ROWS` rows, and the
    last ``recent_rows`` rows in a part of their own (the one an update rewrites)."""
    _check_columns(table.column_names, meta, "table")
    _layout_write(path, meta, (), split_rows(table, recent_rows))


def split_rows(table: pa.Table, recent_rows: int = 0) -> list[pa.Table]:
    """``table`` cut into parts: even ones of at most `PART_ROWS` rows, then the last
    ``recent_rows`` rows on their own."""
    recent = min(max(0, recent_rows), table.num_rows)
    older = table.num_rows - recent
    chunks = []
    if older:
        n = math.ceil(older / PART_ROWS)
        step = math.ceil(older / n)
        chunks = [table.slice(i * step, min(step, older - i * step)) for i in range(n)]
    if recent or not chunks:
        chunks.append(table.slice(older, recent))
    return chunks


def replace_tail(path: Path, keep: Sequence[Part], tables: Sequence[pa.Table], meta: FeatureFileMeta) -> Manifest:
    """Keep the parts ``keep`` of the folder at ``path`` and put ``tables`` after them as new
    parts (the incremental rebuild's write); the manifest that results."""
    for t in tables:
        _check_columns(t.column_names, meta, "table")
    return _layout_write(path, meta, keep, tables)


def _layout_write(path: Path, meta: FeatureFileMeta, keep: Sequence[Part], tables: Sequence[pa.Table]) -> Manifest:
    try:
        return layout.write(Path(path), meta.payload(), keep, tables, META_KEY)
    except LayoutError as exc:
        raise FeatureFileError(f"cannot write {path}: {exc}") from None
    except OSError as exc:
        raise FeatureFileError(f"cannot write {path} ({exc.strerror or type(exc).__name__})") from None


def _check_columns(columns: Sequence[str], meta: FeatureFileMeta, what: str) -> None:
    missing = [c for c in (*BASE_COLUMNS, *meta.feature_names) if c not in columns]
    if missing:
        raise FeatureFileError(f"feature {what} for {meta.symbol} lacks columns: {', '.join(missing[:5])}")


# ------------------------------------------------------------------ reading


def read_manifest(path: Path) -> Manifest | None:
    """The manifest of a folder-layout file (its meta and parts, whose footers are
    checked), or None for a file in the older single-file layout. Raises
    `FeatureFileError` when missing or damaged."""
    path = Path(path)

    def attempt() -> Manifest | None:
        if not path.exists():
            raise FileNotFoundError(path)
        if not layout.is_part_folder(path):
            return None
        try:
            manifest = layout.read_manifest(path)
            layout.check_parts(path, manifest)
            return manifest
        except LayoutError as exc:
            raise FeatureFileError(_damaged(path, str(exc))) from None

    return _retrying(path, attempt)


def read_feature_meta(path: Path) -> FeatureFileMeta:
    """Read only the metadata (cheap: the manifest and the parts' parquet footers, which
    are checked, so a torn part shows here and not half-way through training)."""
    path = Path(path)

    def attempt() -> FeatureFileMeta:
        if not path.exists():
            raise FileNotFoundError(path)
        if not layout.is_part_folder(path):
            return _legacy_meta(path)
        try:
            manifest = layout.read_manifest(path)
            layout.check_parts(path, manifest)
        except LayoutError as exc:
            raise FeatureFileError(_damaged(path, str(exc))) from None
        return _meta_of(path, manifest.meta, manifest.rows)

    return _retrying(path, attempt)


def read_feature_file(path: Path) -> tuple[pd.DataFrame, FeatureFileMeta]:
    """The frame and its metadata; refuses a file whose columns disagree with its metadata."""
    table, meta = _read_table(Path(path), None)
    frame = table.to_pandas()
    missing = [c for c in meta.feature_names if c not in frame.columns]
    if missing:
        raise FeatureFileError(f"{path} lacks feature columns its metadata names: {', '.join(missing[:5])}")
    if len(frame) != meta.rows:
        raise FeatureFileError(f"{path} holds {len(frame)} rows but its metadata says {meta.rows}")
    return frame, meta


def read_feature_columns(path: Path, columns: Sequence[str]) -> tuple[pd.DataFrame, FeatureFileMeta]:
    """Only ``columns`` of the file (e.g. timestamp and close), and its metadata."""
    table, meta = _read_table(Path(path), list(columns))
    return table.to_pandas(), meta


def _read_table(path: Path, columns: list[str] | None) -> tuple[pa.Table, FeatureFileMeta]:
    def attempt() -> tuple[pa.Table, FeatureFileMeta]:
        if not path.exists():
            raise FileNotFoundError(path)
        if not layout.is_part_folder(path):
            meta = _legacy_meta(path)
            try:
                return pq.read_table(path, columns=columns), meta
            except (pa.ArrowException, OSError) as exc:
                raise FeatureFileError(_damaged(path, _first_line(exc))) from None
        try:
            manifest = layout.read_manifest(path)
            table = layout.read_parts(path, manifest.parts, columns)
        except LayoutError as exc:
            raise FeatureFileError(_damaged(path, str(exc))) from None
        except (pa.ArrowException, KeyError) as exc:  # a column asked for is not there
            raise FeatureFileError(f"{path} cannot give columns {columns}: {_first_line(exc)}") from None
        return table, _meta_of(path, manifest.meta, manifest.rows)

    return _retrying(path, attempt)


def _retrying(path: Path, attempt: Callable[[], _T]) -> _T:
    """``attempt()``, again when a file vanished under it: a writer replacing parts, or
    turning an old single file into a folder, removes files readers may have just listed."""
    for delay in (0.05, 0.2, 0.5):
        try:
            return attempt()
        except FileNotFoundError:
            time.sleep(delay)
    try:
        return attempt()
    except FileNotFoundError:
        if Path(path).exists():
            raise FeatureFileError(_damaged(Path(path), "a part its manifest names is missing")) from None
        raise FeatureFileError(f"no feature file at {path} (run `console features build` first)") from None


def _legacy_meta(path: Path) -> FeatureFileMeta:
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise FeatureFileError(_damaged(path, _first_line(exc))) from None
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise FeatureFileError(f"{path} has no retrain-console metadata (rebuild it with `console features build`)")
    try:
        data = json.loads(raw)
    except ValueError:
        raise FeatureFileError(_damaged(path, "malformed retrain-console metadata")) from None
    return _meta_of(path, data, None)


def _meta_of(path: Path, data: Any, rows: int | None) -> FeatureFileMeta:
    try:
        return FeatureFileMeta(
            symbol=str(data["symbol"]),
            spec_version=str(data["spec_version"]),
            feature_hash=str(data["feature_hash"]),
            feature_names=tuple(str(n) for n in data["feature_names"]),
            rows=int(data["rows"]) if rows is None else rows,
        )
    except (KeyError, TypeError, ValueError):
        raise FeatureFileError(_damaged(path, "malformed retrain-console metadata")) from None


def _damaged(path: Path, detail: str) -> str:
    symbol = path.name.removesuffix(".parquet")
    return f"{path} is damaged or unreadable ({detail}); rebuild it with `console features build --symbols {symbol}`"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
