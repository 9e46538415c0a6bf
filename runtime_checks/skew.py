"""Training-serving skew measured on values: the runtime builder's rows against the file's.

Names, order and hashes can all agree while the values do not (a gap filled on one side
and not the other, an indicator started at another point). The alignment check therefore
also rebuilds the recent rows with the runtime path (`runtime_checks.inputs`: the fetched
candles, the live gap policy, the runtime builder) and compares them with the training
feature file's rows **for the same timestamps**, feature by feature.

Tolerance: a value differs when it is more than ``TOLERANCE_SD`` (0.1) of that feature's
standard deviation in the training file away from the file's value. The check fails when
any compared row differs, and names the features (worst first) with the row and size of
their worst difference. Rows the runtime builder leaves NaN (its warm-up and settling,
`SpecFeatureBuilder`) are not compared; with no timestamp in common (the file was built
long before the fetch) the values are reported as not compared, never as agreeing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

TOLERANCE_SD = 0.1
"""Largest difference allowed between runtime and file values, in standard deviations."""
STD_ROWS = 20_000
"""The file's newest rows whose spread scales each feature's difference."""


def read_file_rows(path: Path, names: Sequence[str], since: pd.Timestamp) -> tuple[pd.DataFrame, np.ndarray]:
    """The feature file's rows from ``since`` on, and each feature's standard deviation over
    its newest `STD_ROWS` rows (1.0 for a constant feature)."""
    from training.features.io import read_feature_columns

    frame, _ = read_feature_columns(path, ["timestamp", *names])
    tail = frame.iloc[-STD_ROWS:]
    std = tail.loc[:, list(names)].std().to_numpy(dtype=np.float64)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    return frame.loc[(stamps >= since).to_numpy()].reset_index(drop=True), std


def value_skew(built: pd.DataFrame, path: Path, names: Sequence[str]) -> dict[str, Any]:
    """Compare the runtime-built rows with the feature file's for the same timestamps."""
    names = [n for n in names if n in built.columns]
    if not len(built) or not names:
        return {"compared_rows": 0, "skewed_rows": 0, "features": [], "tolerance_sd": TOLERANCE_SD}
    stamps = pd.to_datetime(built["timestamp"], utc=True)
    file_rows, std = read_file_rows(path, names, stamps.iloc[0])
    live = built.loc[:, ["timestamp", *names]].copy()
    live["timestamp"] = stamps
    file_rows["timestamp"] = pd.to_datetime(file_rows["timestamp"], utc=True)
    both = live.merge(file_rows, on="timestamp", suffixes=("", "__file"))
    a = both.loc[:, names].to_numpy(dtype=np.float64)
    b = both.loc[:, [f"{n}__file" for n in names]].to_numpy(dtype=np.float64)
    rows = np.isfinite(a).all(axis=1)
    a, b, when = a[rows], b[rows], both["timestamp"].to_numpy()[rows]
    diff = np.abs(a - b) / std
    diff[~np.isfinite(diff)] = np.inf  # a finite runtime value against a NaN in the file is a difference
    over = diff > TOLERANCE_SD
    features = []
    if len(diff):
        worst_row = diff.argmax(axis=0)
        for j in np.argsort(-diff.max(axis=0)):
            if not over[:, j].any():
                break
            i = int(worst_row[j])
            features.append({"name": names[j], "rows": int(over[:, j].sum()), "worst_sd": float(diff[i, j]),
                             "at": f"{pd.Timestamp(when[i]):%Y-%m-%d %H:%M} UTC",
                             "runtime": float(a[i, j]), "file": float(b[i, j])})  # fmt: skip
    return {
        "compared_rows": int(len(diff)),
        "skewed_rows": int(over.any(axis=1).sum()),
        "worst_sd": float(diff.max()) if len(diff) else None,
        "first": f"{pd.Timestamp(when[0]):%Y-%m-%d %H:%M} UTC" if len(when) else None,
        "last": f"{pd.Timestamp(when[-1]):%Y-%m-%d %H:%M} UTC" if len(when) else None,
        "features": features,
        "tolerance_sd": TOLERANCE_SD,
    }


def skew_problem(skew: dict[str, Any]) -> str | None:
    """The alignment problem line for a measured skew (None when the values agree)."""
    if not skew["features"]:
        return None
    worst = "; ".join(f"{f['name']} on {f['rows']} rows (worst {f['worst_sd']:.2g} sd at {f['at']}: runtime "
                      f"{f['runtime']:.6g}, file {f['file']:.6g})" for f in skew["features"][:5])  # fmt: skip
    more = len(skew["features"]) - 5
    return (f"values differ beyond {skew['tolerance_sd']:g} sd on {skew['skewed_rows']} of {skew['compared_rows']} "
            f"rows: {worst}" + (f" (+{more} more features)" if more > 0 else ""))  # fmt: skip
