"""Reading and checking the two daily tables, and their partitioned layout in the data bucket.

A table is refused (`training.errors.TrainingInputError`, one line, exit 2) when a
column is missing (each missing one named), when it has fewer days than the job needs,
when a day has NaN or infinite values (the days named: never filled across), or when two
consecutive days are more than `MAX_GAP_DAYS` calendar days apart (a missing stretch,
named). Weekends and one-day holidays are not gaps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from training.errors import FeatureFileProblem, NonFiniteValues, NotEnoughData
from training.families.investment import CONTEXT_COLUMNS, FEATURE_COLUMNS

MAX_GAP_DAYS = 5
"""Calendar days between two rows above which the data has a hole (a long weekend is 4)."""
TABLES = {"context": CONTEXT_COLUMNS, "features": FEATURE_COLUMNS}
"""Table name -> its columns; the name is also its folder in the bucket."""
_DATE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def partition_key(table: str, day: str) -> str:
    """``<table>/date=YYYY-MM-DD/<table>.parquet``: where the daily pipeline puts one day."""
    if table not in TABLES:
        raise FeatureFileProblem(f"unknown daily table {table!r} (known: {', '.join(TABLES)})")
    stamp = pd.Timestamp(day).strftime("%Y-%m-%d")
    return f"{table}/date={stamp}/{table}.parquet"


def partition_day(key: str) -> str | None:
    """The day of a partition key (None for anything else under the table's folder)."""
    parts = key.strip("/").split("/")
    if len(parts) != 3:
        return None
    match = _DATE.match(parts[1])
    return match.group(1) if match and parts[2] == f"{parts[0]}.parquet" else None


def read_partitions(root: Path, table: str, max_days: int) -> pd.DataFrame:
    """The newest ``max_days`` day partitions of ``table`` under ``root`` (a downloaded bucket
    prefix) as one checked frame, oldest first."""
    folder = Path(root) / table
    days = sorted(
        (day, path)
        for path in folder.glob("date=*/*.parquet")
        if (day := partition_day(str(path.relative_to(root)))) is not None
    )
    if not days:
        raise NotEnoughData(f"no {table} partitions under {folder}; run `console data backfill --days 365` first")
    frames = [pd.read_parquet(path) for _, path in days[-max_days:]]
    return check_table(pd.concat(frames, ignore_index=True), table, where=str(folder))


def read_table(path: Path, table: str, *, min_days: int = 1) -> pd.DataFrame:
    """One table's parquet file, checked (`check_table`)."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileProblem(f"{path} does not exist; give the {table} file the daily pipeline wrote")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - arrow raises many types for a bad file; all mean the same
        raise FeatureFileProblem(f"{path} is not a readable parquet file ({type(exc).__name__})") from None
    return check_table(frame, table, where=str(path), min_days=min_days)


def check_table(frame: pd.DataFrame, table: str, *, where: str, min_days: int = 1) -> pd.DataFrame:
    """``frame`` with its columns in contract order, sorted by day (and symbol), or a refusal."""
    columns = TABLES[table]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:12])) or "none"
        raise FeatureFileProblem(
            f"{where}: the {table} table lacks column(s) {', '.join(missing)} (found: {found}); "
            f"rebuild it with `console data daily`"
        )
    frame = frame.loc[:, list(columns)].copy()
    frame["date"] = pd.to_datetime(frame["date"]).dt.tz_localize(None).dt.normalize()
    keys = ["date", "symbol"] if "symbol" in columns else ["date"]
    frame = frame.sort_values(keys, kind="mergesort").reset_index(drop=True)
    duplicated = frame.duplicated(keys)
    if duplicated.any():
        raise FeatureFileProblem(f"{where}: {int(duplicated.sum())} duplicated {'/'.join(keys)} row(s)")
    values = frame.loc[:, [c for c in columns if c not in ("date", "symbol")]].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        days = sorted(set(frame.loc[bad, "date"].dt.strftime("%Y-%m-%d")))
        raise NonFiniteValues(
            f"{where}: NaN or infinite values on {len(days)} day(s) ({_few(days)}); "
            "rebuild those days, nothing is filled across them"
        )
    dates = pd.DatetimeIndex(frame["date"].unique())
    if len(dates) < min_days:
        raise NotEnoughData(f"{where}: {len(dates)} day(s) of {table}, need at least {min_days}")
    gaps = [
        f"{a:%Y-%m-%d}..{b:%Y-%m-%d}" for a, b in zip(dates[:-1], dates[1:], strict=True) if (b - a).days > MAX_GAP_DAYS
    ]
    if gaps:
        raise NotEnoughData(f"{where}: the {table} table has {len(gaps)} gap(s) ({_few(gaps)}); backfill those days")
    return frame


def _few(items: Sequence[str], shown: int = 3) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as parquet atomically (a reader sees the old file or the new)."""
    from training.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def split_days(days: int, fractions: Iterable[float] = (0.6, 0.2), gap: int = 0) -> tuple[slice, slice, slice]:
    """Chronological train / validation / test slices over ``days`` positions, ``gap`` days
    purged between parts (a label that looks ``gap`` days ahead never reaches the next part)."""
    train_f, val_f = fractions
    train_end = int(days * train_f)
    val_end = int(days * (train_f + val_f))
    return slice(0, train_end - gap), slice(train_end, val_end - gap), slice(val_end, days)
