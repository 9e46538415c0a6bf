"""The gap policy: small holes filled the same way by training and the live path, long
holes never bridged by a feature, a window or a label."""

from __future__ import annotations

import numpy as np
import pandas as pd

from remote.sandbox.market import sample_inputs
from runtime_checks.inputs import fresh_candles
from training.data.market import unix_seconds
from training.dataset import WindowSpec, load_symbol_dataset
from training.features.build import build_features
from training.features.gaps import fill_small_holes, time_contiguous
from training.features.io import FeatureFileMeta, write_feature_file
from training.features.spec import spec_for

START = int(pd.Timestamp("2025-03-01", tz="UTC").timestamp())
DAY = 86_400


def gapped(hours: float = 3.0):
    candles, fundamentals = sample_inputs("ETH-USD", START, START + 4 * DAY, seed=5)
    minute = candles["1m"]
    hole = pd.Timestamp(START + 2 * DAY, unit="s", tz="UTC")
    keep = (minute["timestamp"] < hole) | (minute["timestamp"] >= hole + pd.Timedelta(hours=hours))
    keep &= ~minute.index.isin([500, 900, 901, 902])  # small holes: 1 and 3 minutes
    return minute.loc[keep].reset_index(drop=True), fundamentals, hole + pd.Timedelta(hours=hours)


def test_no_feature_bridges_a_long_hole():
    minute, fundamentals, hole_end = gapped()
    spec = spec_for("ETH-USD")
    full = build_features("ETH-USD", {"1m": minute}, fundamentals, spec, finite_only=True)
    after_only = build_features("ETH-USD", {"1m": minute[minute["timestamp"] >= hole_end]}, fundamentals, spec,
                                finite_only=True)  # fmt: skip
    mine = full[full["timestamp"] >= hole_end].reset_index(drop=True)
    # What comes after the hole is exactly what a build that never saw the candles before it gives.
    assert len(mine) == len(after_only) > 0
    np.testing.assert_array_equal(mine[list(spec.names)].to_numpy(), after_only[list(spec.names)].to_numpy())
    assert (mine["timestamp"].iloc[0] - hole_end) >= pd.Timedelta(minutes=spec.lookback_minutes - 1)


def test_small_holes_are_filled_identically_by_training_and_the_live_path():
    minute, _, _ = gapped(hours=0)
    tail = minute.iloc[400:1000].reset_index(drop=True)
    live = fresh_candles(tail, symbol="ETH-USD", granularity=60, now=unix_seconds(tail["timestamp"])[-1] + 60)
    trained = fill_small_holes(tail, 60)
    pd.testing.assert_frame_equal(live, trained)
    t = unix_seconds(tail["timestamp"])
    assert len(trained) == (t[-1] - t[0]) // 60 + 1 > len(tail)  # the simulator drops minutes too
    assert (np.diff(unix_seconds(trained["timestamp"])) == 60).all()
    filled = trained[~trained["timestamp"].isin(tail["timestamp"])]
    assert (filled["volume"] == 0).all() and (filled["open"] == filled["close"]).all()


def test_labels_and_windows_are_in_time_not_rows(tmp_path):
    minute, fundamentals, hole_end = gapped()
    spec = spec_for("ETH-USD")
    frame = build_features("ETH-USD", {"1m": minute}, fundamentals, spec, finite_only=True)
    path = tmp_path / "ETH-USD.parquet"
    write_feature_file(path, frame, FeatureFileMeta("ETH-USD", spec.version, spec.hash, spec.names, len(frame)))
    ds = load_symbol_dataset(path, WindowSpec(window=30, horizon=5, longest_feature_window=61))
    t = unix_seconds(frame["timestamp"])
    for ends in (ds.train_ends, ds.val_ends, ds.test_ends):
        assert (t[ends + 5] - t[ends] == 300).all()  # "5 minutes ahead" is 5 minutes ahead
        assert (t[ends] - t[ends - 29] == 29 * 60).all()  # no window spans the hole
    ok = time_contiguous(frame["timestamp"], 29, 5, 60)
    assert not ok[np.searchsorted(t, int(hole_end.timestamp())) - 1]
