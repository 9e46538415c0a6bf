"""Feature files from the candle store: full builds and the incremental rebuild.

`build_feature_file` reads a symbol's inputs from the store, builds every feature,
drops the warm-up rows (any non-finite feature) and writes ``OUT/<SYMBOL>.parquet`` with
`training.features.io.write_feature_file` (spec version and feature hash in the schema).

`update_feature_file` appends new candles' rows to an existing file without rebuilding
it all: it recomputes only a tail that starts a warm-up before the file's last row
(long enough that every recursive indicator has forgotten where it started, to far
below float64 noise on the values) and keeps the file's rows before that. A file built
from another spec is rebuilt in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.market import TIMEFRAMES, check_symbol, unix_seconds
from training.data.store import CandleStore
from training.features.build import build_features
import pyarrow as pa
import pyarrow.parquet as pq

from training.features.io import FeatureFileError, FeatureFileMeta, read_feature_meta, write_feature_file, write_feature_table
from training.errors import NotEnoughData
from training.features.spec import FeatureSpec

WARMUP_CANDLES = 1_000
"""Candles of each timeframe recomputed before the first new row. TA-Lib's recursive
indicators (EMA 26, Wilder RSI 14, MACD signal) decay by (25/27)^n; at 1,000 candles the
start no longer shows in any float64 digit that matters (below 1e-30 relative)."""


@dataclass(frozen=True)
class BuildReport:
    """What a build wrote."""

    symbol: str
    path: Path
    rows: int
    features: int
    feature_hash: str
    dropped_warmup: int
    incremental: bool = False

    def summary(self) -> str:
        how = "updated" if self.incremental else "built"
        return f"{self.symbol}: {how} {self.features} features x {self.rows} rows -> {self.path}"


def load_inputs(store: CandleStore, spec: FeatureSpec) -> tuple[dict[str, pd.DataFrame], pd.DataFrame | None]:
    """The candles and fundamentals ``spec`` needs, read from the store."""
    candles = {tf: store.read_candles(spec.symbol, tf) for tf in spec.timeframes}
    needs_fundamentals = any(f.family == "fundamentals" for f in spec.features)
    fundamentals = store.read_fundamentals(spec.symbol) if needs_fundamentals else None
    return candles, fundamentals


def feature_path(out_dir: Path | str, symbol: str) -> Path:
    return Path(out_dir) / f"{check_symbol(symbol)}.parquet"


def write_features(path: Path, frame: pd.DataFrame, spec: FeatureSpec) -> None:
    """Write a built frame with the spec's version and hash."""
    write_feature_file(
        path, frame, FeatureFileMeta(spec.symbol, spec.version, spec.hash, spec.names, len(frame))
    )


def build_feature_file(
    spec: FeatureSpec,
    candles_by_tf: dict[str, pd.DataFrame],
    fundamentals: pd.DataFrame | None,
    out_dir: Path | str,
) -> BuildReport:
    """Build all features for ``spec.symbol`` and write ``out_dir/<SYMBOL>.parquet``."""
    frame = build_features(spec.symbol, candles_by_tf, fundamentals, spec, finite_only=True)
    if len(frame) == 0:
        raise NotEnoughData(
            f"{spec.symbol}: {len(candles_by_tf['1m'])} one-minute candles are all warm-up for {spec.count} features "
            "(the 1h MACD needs about 34 hours, the 30-day trends 31 days of fundamentals); fetch more days"
        )
    path = feature_path(out_dir, spec.symbol)
    write_features(path, frame, spec)
    return BuildReport(spec.symbol, path, len(frame), spec.count, spec.hash, len(candles_by_tf["1m"]) - len(frame))


def tail_inputs(
    candles_by_tf: dict[str, pd.DataFrame], since: pd.Timestamp, warmup: int = WARMUP_CANDLES
) -> dict[str, pd.DataFrame]:
    """Each timeframe's candles from ``warmup`` candles before ``since`` onward."""
    out = {}
    for tf, frame in candles_by_tf.items():
        t = unix_seconds(frame["timestamp"])
        first = max(0, int(np.searchsorted(t, int(since.timestamp()), side="left")) - warmup)
        # Higher timeframes: also cover the 1m warm-up (their candles are longer).
        if tf != "1m":
            first = max(0, first - warmup * TIMEFRAMES["1m"] // TIMEFRAMES[tf] - 1)
        out[tf] = frame.iloc[first:]
    return out


def update_feature_file(
    spec: FeatureSpec,
    candles_by_tf: dict[str, pd.DataFrame],
    fundamentals: pd.DataFrame | None,
    out_dir: Path | str,
    *,
    warmup: int = WARMUP_CANDLES,
) -> BuildReport:
    """Append rows for candles newer than the file's last row, recomputing only the tail.

    Rebuilds in full when there is no file or it was built from another spec.
    """
    path = feature_path(out_dir, spec.symbol)
    if not path.exists() or read_feature_meta(path).feature_hash != spec.hash:
        return build_feature_file(spec, candles_by_tf, fundamentals, out_dir)
    try:
        old = pq.read_table(path, memory_map=True)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FeatureFileError(f"{path} is not a readable parquet file ({exc.__class__.__name__}); rebuild it") from None
    if old.num_rows == 0:
        return build_feature_file(spec, candles_by_tf, fundamentals, out_dir)
    last = pd.Timestamp(old.column("timestamp")[-1].as_py())
    tail = build_features(spec.symbol, tail_inputs(candles_by_tf, last, warmup), fundamentals, spec, finite_only=True)
    new = tail[tail["timestamp"] > last]
    schema = old.schema.remove_metadata()
    table = old
    if len(new):
        # The old rows stay Arrow buffers; only the new rows are converted.
        table = pa.concat_tables([table, pa.Table.from_pandas(new, schema=schema, preserve_index=False)])
    write_feature_table(path, table, FeatureFileMeta(spec.symbol, spec.version, spec.hash, spec.names, table.num_rows))
    return BuildReport(spec.symbol, path, table.num_rows, spec.count, spec.hash, 0, incremental=True)
