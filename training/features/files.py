"""Feature files from the candle store: full builds and the incremental rebuild.

`build_feature_file` reads a symbol's inputs from the store, builds every feature,
drops the warm-up rows (any non-finite feature) and writes ``OUT/<SYMBOL>.parquet`` with
`training.features.io.write_feature_file` (spec version and feature hash in the schema).

`update_feature_file` brings an existing file up to date with new candles without
rebuilding it all. Feature files are folders of parquet parts (`training.features.layout`);
the last part holds the recent rows (at least `RECENT_ROWS`, at most `OPEN_PART_ROWS`)
and every part before it is sealed. An update keeps the sealed parts untouched and
recomputes only the last part plus the new rows, from candles starting a warm-up
(`WARMUP_CANDLES`, far longer than any feature's window, and long enough that every
recursive indicator has forgotten where it started) before them; it writes that one
part (two, when it seals some of it) and a new manifest: thousands of rows instead of
years of them.

It does not trust the kept rows blindly: it also recomputes the hour before the part it
rewrites and compares it with the rows stored there; if they differ (candles or
fundamentals changed under the file) it rebuilds in full, as it does for a file built
from another spec, a damaged file, or one in the older single-file layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from training.data.market import TIMEFRAMES, check_symbol, unix_seconds
from training.data.store import CandleStore
from training.errors import NotEnoughData
from training.features import layout
from training.features.build import build_features
from training.features.io import (
    PART_ROWS,
    FeatureFileError,
    FeatureFileMeta,
    frame_to_table,
    read_manifest,
    replace_tail,
    split_rows,
    write_feature_file,
)
from training.features.layout import LayoutError, Manifest, Part
from training.features.spec import FeatureSpec

WARMUP_CANDLES = 1_000
"""Candles of each timeframe recomputed before the first new row. TA-Lib's recursive
indicators (EMA 26, Wilder RSI 14, MACD signal) decay by (25/27)^n; at 1,000 candles the
start no longer shows in any float64 digit that matters (below 1e-30 relative)."""

RECENT_ROWS = 4_320
"""The last rows (three days of minutes) always sit in a part of their own that every
update recomputes: a row's inputs can still arrive after it was written (CoinGecko's
daily point up to two days late, a higher-timeframe candle closing with the row), and a
full rebuild would then see them."""

OPEN_PART_ROWS = 10_080
"""The last part grows with each update up to this many rows (a week of minutes); then all
but its last `RECENT_ROWS` rows are sealed into a part no update touches again."""

MAX_PARTS = 64
"""Past this many parts an update also merges the small sealed parts at the end into
parts of `PART_ROWS` rows (about once a year of daily updates)."""

CHECK_CANDLES = 60
"""One-minute rows before the rewritten part that an update recomputes and compares with
the stored ones, to notice inputs that changed under the file."""


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
    new_rows: int = 0
    """Rows an incremental update added."""
    why_full: str = ""
    """Why an update rebuilt the file in full (empty for a plain full build)."""

    def summary(self) -> str:
        if self.incremental:
            how = f"updated (+{self.new_rows} rows)"
        else:
            how = f"built ({self.why_full})" if self.why_full else "built"
        return f"{self.symbol}: {how} {self.features} features x {self.rows} rows -> {self.path}"


def load_inputs(store: CandleStore, spec: FeatureSpec) -> tuple[dict[str, pd.DataFrame], pd.DataFrame | None]:
    """The candles and fundamentals ``spec`` needs, read from the store."""
    candles = {tf: store.read_candles(spec.symbol, tf) for tf in spec.timeframes}
    needs_fundamentals = any(f.family == "fundamentals" for f in spec.features)
    fundamentals = store.read_fundamentals(spec.symbol) if needs_fundamentals else None
    return candles, fundamentals


def features_folder(root: Path | str, timeframe: str = "1m") -> Path:
    """Where the feature files of ``timeframe`` rows live: ``root`` for one-minute rows (the
    runbook's), ``root/<timeframe>/`` for a longer base, so an hourly build never replaces
    the one-minute file of the same symbol."""
    return Path(root) if timeframe == "1m" else Path(root) / timeframe


def feature_path(out_dir: Path | str, symbol: str) -> Path:
    return Path(out_dir) / f"{check_symbol(symbol)}.parquet"


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
            f"{spec.symbol}: {len(candles_by_tf[spec.base])} {spec.base} candles are all warm-up for "
            f"{spec.count} features (the 1h MACD needs about 34 hours, the 30-day trends 31 days of fundamentals); fetch more days"
        )
    path = feature_path(out_dir, spec.symbol)
    write_feature_file(
        path,
        frame,
        FeatureFileMeta(spec.symbol, spec.version, spec.hash, spec.names, len(frame)),
        recent_rows=RECENT_ROWS,
    )
    return BuildReport(spec.symbol, path, len(frame), spec.count, spec.hash, len(candles_by_tf[spec.base]) - len(frame))


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
    """Bring ``out_dir/<SYMBOL>.parquet`` up to date with the candles, recomputing only the tail.

    The result equals a full rebuild's to float64 rounding (running sums restarted a
    warm-up back differ in the last digits). Rebuilds in full when there is no file, it
    is in the older single-file layout, damaged, built from another spec, or its stored
    rows disagree with the inputs (see the module doc).
    """
    path = feature_path(out_dir, spec.symbol)
    if spec.base != "1m":  # a longer base is a small file: rebuilt whole (the tail logic is in minutes)
        return _full(spec, candles_by_tf, fundamentals, out_dir, f"{spec.base} rows are rebuilt whole")
    manifest, why = _current_manifest(path, spec)
    if manifest is None:
        return _full(spec, candles_by_tf, fundamentals, out_dir, why)
    parts = manifest.parts
    open_part = parts[-1] if parts[-1].rows < OPEN_PART_ROWS else None
    keep = parts[:-1] if open_part else parts
    since_ns = open_part.first_ns if open_part else parts[-1].last_ns + 1
    minutes = _ns(candles_by_tf["1m"]["timestamp"])
    if open_part is None and (len(minutes) == 0 or minutes[-1] <= parts[-1].last_ns):
        return _report(spec, path, manifest, 0)  # nothing newer than the file: nothing to write
    # Without new candles the recent part is still recomputed: a late fundamentals point
    # or higher-timeframe candle can change its rows, as it would a full rebuild's.
    check_ns = since_ns - CHECK_CANDLES * TIMEFRAMES["1m"] * 10**9 if keep else since_ns
    tail = build_features(
        spec.symbol,
        tail_inputs(candles_by_tf, pd.Timestamp(check_ns, unit="ns", tz="UTC"), warmup),
        fundamentals,
        spec,
        finite_only=True,
    )
    tail_ns = _ns(tail["timestamp"])
    if keep and not _agrees_with_stored(path, keep[-1], tail, tail_ns, check_ns, since_ns, spec):
        return _full(spec, candles_by_tf, fundamentals, out_dir, "the candles before the last part changed")
    new = tail.iloc[int(np.searchsorted(tail_ns, since_ns, side="left")) :]
    if len(new) == 0 and open_part is None:
        return _report(spec, path, manifest, 0)  # the new candles are all warm-up: nothing to add
    region = frame_to_table(new)
    tables = split_rows(region, RECENT_ROWS) if region.num_rows >= OPEN_PART_ROWS else [region] if len(new) else []
    if len(keep) + len(tables) > MAX_PARTS:
        keep, tables = _compact(path, keep, tables)
    if not keep and not tables:
        return _full(spec, candles_by_tf, fundamentals, out_dir, "no rows were left to keep")
    written = replace_tail(path, keep, tables, FeatureFileMeta(spec.symbol, spec.version, spec.hash, spec.names, 0))
    return _report(spec, path, written, written.rows - manifest.rows)


def _current_manifest(path: Path, spec: FeatureSpec) -> tuple[Manifest | None, str]:
    """The file's manifest when an update may build on it, else None and why not."""
    if not path.exists():
        return None, "no file yet"
    try:
        manifest = read_manifest(path)
    except FeatureFileError:
        return None, "the file was damaged"
    if manifest is None:
        return None, "the file was in the older single-file layout"
    if manifest.meta.get("feature_hash") != spec.hash:
        return None, "the file was built from another spec"
    if not manifest.parts:
        return None, "the file was empty"
    return manifest, ""


def _agrees_with_stored(
    path: Path, part: Part, tail: pd.DataFrame, tail_ns: np.ndarray, check_ns: int, since_ns: int, spec: FeatureSpec
) -> bool:
    """Whether the recomputed rows in [check_ns, since_ns) match those stored at the end of ``part``."""
    try:
        stored = layout.last_rows(path, part, ["timestamp", *spec.names])
    except LayoutError:
        return False
    stored_ns = stored.column("timestamp").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()
    lo, hi = np.searchsorted(stored_ns, check_ns, side="left"), len(stored_ns)
    a, b = np.searchsorted(tail_ns, check_ns, side="left"), np.searchsorted(tail_ns, since_ns, side="left")
    if hi - lo != b - a or not np.array_equal(stored_ns[lo:hi], tail_ns[a:b]):
        return False
    for name in spec.names:
        old = stored.column(name).to_numpy()[lo:hi]
        new = tail[name].to_numpy()[a:b]
        scale = float(np.max(np.abs(old))) if len(old) else 0.0
        # Generous next to float rounding (1e-12 or so), tiny next to a changed candle.
        if not np.allclose(new, old, rtol=1e-6, atol=1e-6 * scale):
            return False
    return True


def _compact(path: Path, keep: tuple[Part, ...], tables: list[pa.Table]) -> tuple[tuple[Part, ...], list[pa.Table]]:
    """Merge the small sealed parts at the end of ``keep`` and the new sealed rows into parts
    of about `PART_ROWS` rows, leaving the recent part on its own (the small parts are read
    back whole: the one slower update in a long while)."""
    first_small = len(keep)
    while first_small > 0 and keep[first_small - 1].rows < PART_ROWS:
        first_small -= 1
    small = keep[first_small:]
    if len(small) < 2:
        return keep, tables
    sealed, recent = tables[:-1], tables[-1:]
    try:
        merged = pa.concat_tables(
            [layout.read_parts(path, small), *[t.replace_schema_metadata(None) for t in sealed]],
            promote_options="permissive",
        )
    except (LayoutError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise FeatureFileError(f"{path} is damaged ({exc}); rebuild it with `console features build`") from None
    return keep[:first_small], [*split_rows(merged), *recent]


def _full(
    spec: FeatureSpec,
    candles_by_tf: dict[str, pd.DataFrame],
    fundamentals: pd.DataFrame | None,
    out_dir: Path | str,
    why: str,
) -> BuildReport:
    report = build_feature_file(spec, candles_by_tf, fundamentals, out_dir)
    return BuildReport(
        report.symbol,
        report.path,
        report.rows,
        report.features,
        report.feature_hash,
        report.dropped_warmup,
        why_full=why,
    )


def _report(spec: FeatureSpec, path: Path, manifest: Manifest, added: int) -> BuildReport:
    return BuildReport(spec.symbol, path, manifest.rows, spec.count, spec.hash, 0, incremental=True, new_rows=added)


def _ns(timestamps: pd.Series) -> np.ndarray:
    idx = pd.DatetimeIndex(timestamps)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    return np.asarray(idx.as_unit("ns").asi8, dtype=np.int64)
