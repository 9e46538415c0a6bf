"""Feature files: ``FEATURES/<SYMBOL>.parquet``, the one contract between the feature
builder, the trainer and the runtime checks.

Layout of a feature file:

- columns ``timestamp`` (datetime64[ns, UTC], strictly increasing), ``open``, ``high``,
  ``low``, ``close``, ``volume`` (float64), the categorical columns ``session`` and
  ``volatility_regime`` (strings), then every numeric feature, in spec order;
- schema metadata under the key ``retrain_console`` holding JSON:
  ``{"symbol", "spec_version", "feature_hash", "feature_names", "rows"}``.

The feature count is ``len(feature_names)``: timestamp, OHLCV and the categorical
columns are not features (as in the runbook).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from training.atomic import atomic_path

META_KEY = b"retrain_console"
BASE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
CATEGORICAL_COLUMNS = ("session", "volatility_regime")


class FeatureFileError(Exception):
    """A feature file is missing, truncated, or lacks its metadata."""

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


def feature_hash(spec_version: str, definitions: Sequence[dict[str, Any]]) -> str:
    """A stable hash of a feature spec: version, and each feature's name and parameters in order.

    Any change to a name, the order, or a parameter (an RSI period, say) changes it.
    """
    canonical = json.dumps(
        {"spec_version": spec_version, "features": list(definitions)},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def write_feature_file(path: Path, frame: pd.DataFrame, meta: FeatureFileMeta) -> None:
    """Write ``frame`` with ``meta`` atomically: readers see the old file or the new, never half."""
    missing = [c for c in (*BASE_COLUMNS, *meta.feature_names) if c not in frame.columns]
    if missing:
        raise FeatureFileError(f"feature frame for {meta.symbol} lacks columns: {', '.join(missing[:5])}")
    write_feature_table(path, pa.Table.from_pandas(frame, preserve_index=False), meta)


def write_feature_table(path: Path, table: pa.Table, meta: FeatureFileMeta) -> None:
    """`write_feature_file` for an Arrow table (the incremental rebuild appends to one
    without converting the old rows to pandas and back)."""
    missing = [c for c in (*BASE_COLUMNS, *meta.feature_names) if c not in table.column_names]
    if missing:
        raise FeatureFileError(f"feature table for {meta.symbol} lacks columns: {', '.join(missing[:5])}")
    payload = {
        "symbol": meta.symbol,
        "spec_version": meta.spec_version,
        "feature_hash": meta.feature_hash,
        "feature_names": list(meta.feature_names),
        "rows": table.num_rows,
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(payload).encode()})
    with atomic_path(Path(path)) as tmp:
        # Dictionary encoding only pays for the categorical columns; trying it on every
        # float column doubles the write time of a two-year file for nothing.
        dictionary = [c for c in CATEGORICAL_COLUMNS if c in table.column_names]
        pq.write_table(table, tmp, use_dictionary=dictionary, compression="lz4")


def read_feature_meta(path: Path) -> FeatureFileMeta:
    """Read only the metadata (cheap: the parquet footer)."""
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise FeatureFileError(f"no feature file at {path} (run `console features build` first)") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise FeatureFileError(f"{path} is not a readable parquet file ({_first_line(exc)})") from None
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise FeatureFileError(f"{path} has no retrain-console metadata (rebuild it with `console features build`)")
    try:
        data = json.loads(raw)
        return FeatureFileMeta(
            symbol=str(data["symbol"]),
            spec_version=str(data["spec_version"]),
            feature_hash=str(data["feature_hash"]),
            feature_names=tuple(data["feature_names"]),
            rows=int(data["rows"]),
        )
    except (ValueError, KeyError, TypeError):
        raise FeatureFileError(f"{path} has malformed retrain-console metadata") from None


def read_feature_file(path: Path) -> tuple[pd.DataFrame, FeatureFileMeta]:
    """The frame and its metadata; refuses a file whose columns disagree with its metadata."""
    meta = read_feature_meta(path)
    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise FeatureFileError(f"{path} is not a readable parquet file ({_first_line(exc)})") from None
    missing = [c for c in meta.feature_names if c not in frame.columns]
    if missing:
        raise FeatureFileError(f"{path} lacks feature columns its metadata names: {', '.join(missing[:5])}")
    if len(frame) != meta.rows:
        raise FeatureFileError(f"{path} holds {len(frame)} rows but its metadata says {meta.rows}")
    return frame, meta


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
