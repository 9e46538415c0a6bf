"""Incremental feature rebuilds on the part-file layout: the result equals a full rebuild
(on simulated candles, and on real ones where this machine has them), only the tail is
rewritten, changed inputs force a full rebuild, and readers never see a torn set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from remote.sandbox.market import sample_inputs
from training.data.csv_import import read_candle_csv
from training.data.resample import resample_candles
from training.features import files as feature_files
from training.features.files import build_feature_file, update_feature_file
from training.features.io import FeatureFileError, FeatureFileMeta, read_feature_file, read_feature_meta
from training.features.layout import read_manifest
from training.features.spec import spec_for

START = int(pd.Timestamp("2025-03-01", tz="UTC").timestamp())
DAY = 86_400
REAL = Path("/work/shared/data/real")
REAL_MINUTES = REAL / "binanceus_BTCUSDT_1m_20230301_20230321.csv"
REAL_DAYS = REAL / "btcusd_1d_2011_2025.csv"


def _upto(candles, fundamentals, cut: pd.Timestamp):
    """The inputs as they stood before ``cut``: candles opened and fundamentals stamped before it."""
    return ({tf: f[f["timestamp"] < cut] for tf, f in candles.items()},
            fundamentals[fundamentals["timestamp"] < cut])


def assert_same_features(inc: pd.DataFrame, full: pd.DataFrame, names) -> None:
    """Same rows, same categoricals, features equal to float64 rounding: only running sums
    restarted a warm-up back can differ, by a tiny fraction of the feature's own scale."""
    assert len(inc) == len(full)
    assert (inc["timestamp"].to_numpy() == full["timestamp"].to_numpy()).all()
    for col in ("session", "volatility_regime"):
        assert (inc[col].astype(str).to_numpy() == full[col].astype(str).to_numpy()).all(), col
    for col in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(inc[col].to_numpy(), full[col].to_numpy()), col
    for name in names:
        expected = full[name].to_numpy()
        scale = float(np.nanmax(np.abs(expected))) or 1.0
        np.testing.assert_allclose(inc[name].to_numpy(), expected, rtol=1e-9, atol=1e-9 * scale, err_msg=name)


def _daily_updates(spec, candles, fundamentals, out: Path, first_day: int, last_day: int):
    """A file built from the first ``first_day`` days, then updated one day at a time."""
    day0 = candles["1m"]["timestamp"].iloc[0].normalize()
    build_feature_file(spec, *_upto(candles, fundamentals, day0 + pd.Timedelta(days=first_day)), out)
    reports = []
    for day in range(first_day + 1, last_day + 1):
        reports.append(update_feature_file(spec, *_upto(candles, fundamentals, day0 + pd.Timedelta(days=day)), out))
    return reports


@pytest.fixture(scope="module")
def sol():
    return sample_inputs("SOL-USD", START, START + 6 * DAY, seed=9)


def test_daily_updates_rewrite_only_the_open_part_and_equal_a_full_rebuild(sol, tmp_path, monkeypatch):
    candles, fundamentals = sol
    spec = spec_for("SOL-USD")
    monkeypatch.setattr(feature_files, "OPEN_PART_ROWS", 2_000)  # the last part seals after ~1.4 days
    monkeypatch.setattr(feature_files, "RECENT_ROWS", 500)  # but for its last 500 rows
    folder = tmp_path / "inc" / "SOL-USD.parquet"
    sealed: dict[str, bytes] = {}
    day0 = candles["1m"]["timestamp"].iloc[0].normalize()
    build_feature_file(spec, *_upto(candles, fundamentals, day0 + pd.Timedelta(days=2)), tmp_path / "inc")
    for day in range(3, 7):
        parts = read_manifest(folder).parts
        sealed.update({p.file: (folder / p.file).read_bytes() for p in parts[:-1]})
        report = update_feature_file(spec, *_upto(candles, fundamentals, day0 + pd.Timedelta(days=day)), tmp_path / "inc")
        assert report.incremental and report.new_rows > 1_000, report
        parts = read_manifest(folder).parts
        assert parts[-1].rows < 2_000 and len(parts) >= 2
        # Sealed parts are never written again; the folder holds exactly the parts named.
        assert {f: (folder / f).read_bytes() for f in sealed} == sealed
        assert sorted(p.name for p in folder.iterdir() if p.name.startswith("part-")) == sorted(p.file for p in parts)
    assert len(parts) > 3

    build_feature_file(spec, candles, fundamentals, tmp_path / "full")
    inc, meta = read_feature_file(folder)
    full, _ = read_feature_file(tmp_path / "full" / "SOL-USD.parquet")
    assert meta.rows == len(inc) and meta.feature_count == 73 and meta.feature_hash == spec.hash
    assert_same_features(inc, full, spec.names)


def test_an_update_keeps_the_sealed_parts_byte_for_byte_and_rewrites_only_the_recent_one(sol, tmp_path):
    candles, fundamentals = sol
    spec = spec_for("ETH-USD")
    minutes = {"1m": candles["1m"]}
    cut = pd.Timestamp(START + 5 * DAY, unit="s", tz="UTC")
    build_feature_file(spec, *_upto(minutes, fundamentals, cut), tmp_path)
    folder = tmp_path / "ETH-USD.parquet"
    *sealed, recent = read_manifest(folder).parts
    assert sealed and recent.rows == feature_files.RECENT_ROWS
    before = {p.file: (folder / p.file).read_bytes() for p in sealed}
    report = update_feature_file(spec, minutes, fundamentals, tmp_path)
    assert report.incremental and report.new_rows > 1_000
    parts = read_manifest(folder).parts
    assert [p.file for p in parts[:-1]] == list(before) and parts[-1].file != recent.file
    assert {f: (folder / f).read_bytes() for f in before} == before
    assert parts[-1].rows == recent.rows + report.new_rows


def test_without_new_candles_only_the_recent_part_is_recomputed(sol, tmp_path):
    candles, fundamentals = sol
    spec = spec_for("ETH-USD")
    build_feature_file(spec, {"1m": candles["1m"]}, fundamentals, tmp_path)
    folder = tmp_path / "ETH-USD.parquet"
    frame, _ = read_feature_file(folder)
    *sealed, _ = read_manifest(folder).parts
    before = {p.file: (folder / p.file).read_bytes() for p in sealed}
    report = update_feature_file(spec, {"1m": candles["1m"]}, fundamentals, tmp_path)
    assert report.incremental and report.new_rows == 0
    assert {f: (folder / f).read_bytes() for f in before} == before
    assert_same_features(read_feature_file(folder)[0], frame, spec.names)


@pytest.mark.parametrize("where", ["in the recent part", "before the recent part"])
def test_revised_candles_are_recomputed_or_force_a_full_rebuild(sol, tmp_path, where):
    candles, fundamentals = sol
    spec = spec_for("ETH-USD")
    cut = pd.Timestamp(START + 5 * DAY, unit="s", tz="UTC")
    build_feature_file(spec, *_upto({"1m": candles["1m"]}, fundamentals, cut), tmp_path)
    recent_start = pd.Timestamp(read_manifest(tmp_path / "ETH-USD.parquet").parts[-1].first_ns, unit="ns", tz="UTC")
    # Half an hour of minutes is revised (a re-import, say), then a day more arrives.
    end = cut if where == "in the recent part" else recent_start
    revised = candles["1m"].copy()
    hit = (revised["timestamp"] >= end - pd.Timedelta(minutes=30)) & (revised["timestamp"] < end)
    revised.loc[hit, "close"] *= 1.01
    report = update_feature_file(spec, {"1m": revised}, fundamentals, tmp_path)
    if where == "in the recent part":
        assert report.incremental  # the update recomputes those rows anyway
    else:
        assert not report.incremental and "changed" in report.why_full
    build_feature_file(spec, {"1m": revised}, fundamentals, tmp_path / "full")
    assert_same_features(read_feature_file(tmp_path / "ETH-USD.parquet")[0],
                         read_feature_file(tmp_path / "full" / "ETH-USD.parquet")[0], spec.names)


def test_many_parts_are_merged_into_few(sol, tmp_path, monkeypatch):
    candles, fundamentals = sol
    spec = spec_for("ETH-USD")
    monkeypatch.setattr(feature_files, "OPEN_PART_ROWS", 100)
    monkeypatch.setattr(feature_files, "RECENT_ROWS", 60)
    monkeypatch.setattr(feature_files, "MAX_PARTS", 4)
    minutes = {"1m": candles["1m"]}
    day0 = candles["1m"]["timestamp"].iloc[0].normalize()
    build_feature_file(spec, *_upto(minutes, fundamentals, day0 + pd.Timedelta(days=5)), tmp_path)
    for hours in range(2, 16, 2):  # seven updates, each sealing a part
        update_feature_file(spec, *_upto(minutes, fundamentals, day0 + pd.Timedelta(days=5, hours=hours)), tmp_path)
    parts = read_manifest(tmp_path / "ETH-USD.parquet").parts
    assert len(parts) <= 4
    build_feature_file(spec, *_upto(minutes, fundamentals, day0 + pd.Timedelta(days=5, hours=14)), tmp_path / "full")
    assert_same_features(read_feature_file(tmp_path / "ETH-USD.parquet")[0],
                         read_feature_file(tmp_path / "full" / "ETH-USD.parquet")[0], spec.names)


def test_a_file_in_the_older_single_file_layout_is_read_then_replaced_by_a_folder(sol, tmp_path):
    candles, fundamentals = sol
    spec = spec_for("ETH-USD")
    build_feature_file(spec, {"1m": candles["1m"]}, fundamentals, tmp_path / "new")
    frame, meta = read_feature_file(tmp_path / "new" / "ETH-USD.parquet")
    # What the builder wrote before parts existed: one parquet file, metadata in its schema.
    import json

    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**table.schema.metadata, b"retrain_console": json.dumps(meta.payload()).encode()})
    old = tmp_path / "old" / "ETH-USD.parquet"
    old.parent.mkdir()
    pq.write_table(table, old)
    assert read_feature_meta(old) == meta
    again, _ = read_feature_file(old)
    assert_same_features(again, frame, spec.names)

    report = update_feature_file(spec, {"1m": candles["1m"]}, fundamentals, tmp_path / "old")
    assert not report.incremental and "older single-file layout" in report.why_full
    assert old.is_dir() and read_feature_meta(old) == meta
    assert [p.name for p in old.parent.iterdir()] == ["ETH-USD.parquet"]  # nothing left beside it


def test_readers_ignore_parts_the_manifest_does_not_name_and_refuse_a_missing_one(sol, tmp_path):
    candles, fundamentals = sol
    spec = spec_for("ETH-USD")
    build_feature_file(spec, {"1m": candles["1m"]}, fundamentals, tmp_path)
    folder = tmp_path / "ETH-USD.parquet"
    frame, meta = read_feature_file(folder)
    # A writer killed after renaming its part into place but before the manifest.
    part = read_manifest(folder).parts[0]
    (folder / "part-000009-deadbeef.parquet").write_bytes((folder / part.file).read_bytes())
    again, meta_again = read_feature_file(folder)
    assert meta_again == meta and len(again) == len(frame)
    # A part the manifest names is gone: damaged, with what to do.
    (folder / part.file).unlink()
    with pytest.raises(FeatureFileError, match=r"damaged or unreadable .*console features build --symbols ETH-USD"):
        read_feature_meta(folder)


@pytest.mark.skipif(not (REAL_MINUTES.exists() and REAL_DAYS.exists()),
                    reason="real market samples are not on this machine (/work/shared/data/real)")
def test_on_real_candles_daily_updates_equal_a_full_rebuild(tmp_path, monkeypatch):
    """Three weeks of Binance.US BTCUSDT minutes (March 2023, the banking stress), higher
    timeframes resampled from them, and daily fundamentals made from real BTC/USD days."""
    minutes = read_candle_csv(REAL_MINUTES, "1m")
    candles = {"1m": minutes, **{tf: resample_candles(minutes, tf) for tf in ("5m", "15m", "1h")}}
    days = pd.read_csv(REAL_DAYS)
    stamp = pd.to_datetime(days["unix_timestamp"], unit="s", utc=True)
    days = days[(stamp >= "2022-12-01") & (stamp <= "2023-03-22")]
    stamp = pd.to_datetime(days["unix_timestamp"], unit="s", utc=True)
    fundamentals = pd.DataFrame({
        "timestamp": stamp.to_numpy(), "price": days["close"].to_numpy(),
        "market_cap": days["close"].to_numpy() * 19.3e6, "total_volume": (days["volume"] * days["close"]).to_numpy(),
        "ath": 69_000.0, "ath_time": pd.Timestamp("2021-11-10", tz="UTC"),
    })
    spec = spec_for("BTC-USD")
    monkeypatch.setattr(feature_files, "OPEN_PART_ROWS", 3_000)  # seal a part every other day
    monkeypatch.setattr(feature_files, "RECENT_ROWS", 1_440)
    reports = _daily_updates(spec, candles, fundamentals, tmp_path / "inc", 14, 21)
    assert all(r.incremental for r in reports), [r.why_full for r in reports]
    # The full rebuild sees what the last update saw (not the next day's fundamentals point).
    day0 = minutes["timestamp"].iloc[0].normalize()
    build_feature_file(spec, *_upto(candles, fundamentals, day0 + pd.Timedelta(days=21)), tmp_path / "full")
    inc, meta = read_feature_file(tmp_path / "inc" / "BTC-USD.parquet")
    full, _ = read_feature_file(tmp_path / "full" / "BTC-USD.parquet")
    assert meta.feature_count == 73 and len(inc) > 14 * 1440
    assert_same_features(inc, full, spec.names)


def test_meta_payload_round_trips():
    meta = FeatureFileMeta("BTC-USD", "v", "sha256:x", ("a", "b"), 3)
    assert meta.payload() == {"symbol": "BTC-USD", "spec_version": "v", "feature_hash": "sha256:x",
                              "feature_names": ["a", "b"], "rows": 3}
